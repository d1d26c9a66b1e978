"""Evaluation metrics."""

from .elbo import ELBOReport, data_scaling, elbo_sums, evaluate_elbo, report_from_sums

__all__ = ["ELBOReport", "data_scaling", "elbo_sums", "evaluate_elbo", "report_from_sums"]

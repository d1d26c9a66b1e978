"""Our TFRecord reader: CRC-32C against published check values and a bitwise reference, record
framing against tensorboard's TFRecord writer, and tf.train.Example decoding against protobuf.

The helpers at the top (a tiny protobuf *encoder* and the record framing) write fixtures in the
exact published format; ``test_data_bair.py`` uses them too.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import masked_crc32c as tb_masked_crc
from tensorboard.summary.writer.record_writer import RecordWriter

from sigmavae.data import DataFormatError
from sigmavae.data.tfrecord import (
    count_records,
    crc32c,
    iter_examples,
    iter_records,
    masked_crc32c,
    parse_example,
)

# -- a tiny protobuf encoder of tf.train.Example, and the record framing ----------------------


def varint(n: int) -> bytes:
    n &= (1 << 64) - 1  # negative int64 values: ten bytes, two's complement
    out = bytearray()
    while True:
        low, n = n & 0x7F, n >> 7
        out.append(low | (0x80 if n else 0))
        if not n:
            return bytes(out)


def delimited(number: int, payload: bytes) -> bytes:
    """A length-delimited field (wire type 2)."""
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def bytes_feature(*values: bytes) -> bytes:
    return delimited(1, b"".join(delimited(1, v) for v in values))  # Feature.bytes_list


def float_feature(*values: float) -> bytes:  # packed, as TensorFlow writes it
    return delimited(2, delimited(1, struct.pack(f"<{len(values)}f", *values)))


def int64_feature(*values: int) -> bytes:
    return delimited(3, delimited(1, b"".join(varint(v) for v in values)))


def encode_example(features: dict[str, bytes]) -> bytes:
    """Serialise ``Example{features{feature: map<name, Feature>}}``; values from the helpers."""
    entries = b"".join(delimited(1, delimited(1, name.encode()) + delimited(2, feature))
                       for name, feature in features.items())
    return delimited(1, entries)


def frame_record(data: bytes) -> bytes:
    """One TFRecord: length, masked CRC of it, data, masked CRC of the data (tensorboard's CRC)."""
    header = struct.pack("<Q", len(data))
    return (header + struct.pack("<I", tb_masked_crc(header)) + data
            + struct.pack("<I", tb_masked_crc(data)))


def write_tfrecord(path: Path, payloads: list[bytes]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"".join(frame_record(p) for p in payloads))
    return path


# -- CRC-32C ----------------------------------------------------------------------------------


def bitwise_crc32c(data: bytes) -> int:
    """CRC-32C one bit at a time (an independent reference, slow)."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def test_crc32c_check_values():
    # the standard check value and the iSCSI test vectors of RFC 3720, B.4
    assert crc32c(b"123456789") == 0xE3069283
    assert crc32c(bytes(32)) == 0x8A9136AA
    assert crc32c(b"\xff" * 32) == 0x62A8AB43
    assert crc32c(bytes(range(32))) == 0x46DD794E
    assert crc32c(bytes(range(31, -1, -1))) == 0x113FDB5C
    assert crc32c(b"") == 0


@pytest.mark.parametrize("n", [1, 3, 4, 5, 63, 2047, 2048, 2049, 4096 + 13, 70_001])
def test_crc32c_matches_a_bitwise_reference_across_the_vectorised_path(n):
    data = np.random.default_rng(n).integers(0, 256, n, dtype=np.uint8).tobytes()
    assert crc32c(data) == bitwise_crc32c(data)
    assert crc32c(np.frombuffer(data, np.uint8)) == crc32c(memoryview(data))


def test_masked_crc_matches_tensorboard():
    rng = np.random.default_rng(1)
    for n in (0, 8, 100, 5000):
        data = rng.integers(0, 256, n, dtype=np.uint8).tobytes()
        assert masked_crc32c(data) == tb_masked_crc(data)


def test_crc32c_is_fast_enough_for_gigabytes():
    import time

    data = np.random.default_rng(2).integers(0, 256, 4 << 20, dtype=np.uint8)
    start = time.perf_counter()
    crc32c(data)
    assert time.perf_counter() - start < 2.0  # 4 MiB; the pure-Python loop takes ~0.5 s / MiB


# -- record framing ---------------------------------------------------------------------------


def test_reads_records_written_by_tensorboard(tmp_path):
    payloads = [b"", b"a", bytes(range(256)) * 20, b"last"]
    path = tmp_path / "x.tfrecords"
    with open(path, "wb") as f:
        writer = RecordWriter(f)
        for p in payloads:
            writer.write(p)
        writer.flush()
    assert list(iter_records(path)) == payloads
    assert count_records(path) == 4
    assert list(iter_records(tmp_path / "x.tfrecords", check_crc=False)) == payloads


def test_corrupt_data_crc_names_file_and_record(tmp_path):
    path = write_tfrecord(tmp_path / "bad.tfrecords", [b"first", b"second record"])
    raw = bytearray(path.read_bytes())
    second = 12 + 5 + 4
    raw[second + 12 + 2] ^= 0x01  # one bit of the second record's data
    path.write_bytes(bytes(raw))
    with pytest.raises(DataFormatError, match=r"bad\.tfrecords: record 1 \(at byte 21\): "
                       r"corrupt TFRecord file: the CRC of the record's 13 data bytes") as info:
        list(iter_records(path))
    assert "\n" not in str(info.value)
    assert list(iter_records(path, check_crc=False))[1] == b"sebond record"
    assert count_records(path) == 2  # the headers are intact


def test_corrupt_length_crc_and_foreign_file(tmp_path):
    path = write_tfrecord(tmp_path / "len.tfrecords", [b"data"])
    raw = bytearray(path.read_bytes())
    raw[9] ^= 0xFF  # the length's CRC
    path.write_bytes(bytes(raw))
    with pytest.raises(DataFormatError, match=r"len\.tfrecords: record 0 .*CRC of the record "
                       "length does not match"):
        count_records(path)
    foreign = tmp_path / "foreign.tfrecords"
    foreign.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))
    with pytest.raises(DataFormatError, match=r"foreign\.tfrecords: record 0"):
        list(iter_records(foreign))


@pytest.mark.parametrize("cut", [3, 12 + 2, 12 + 7 + 2])
def test_truncated_file_names_file_and_record(tmp_path, cut):
    path = write_tfrecord(tmp_path / "t.tfrecords", [b"whole", b"partial"])
    first = 12 + 5 + 4
    path.write_bytes(path.read_bytes()[:first + cut])
    with pytest.raises(DataFormatError, match=rf"t\.tfrecords: record 1 \(at byte {first}\): "
                       "truncated TFRecord file"):
        list(iter_records(path))
    with pytest.raises(DataFormatError, match="truncated"):
        count_records(path)


# -- tf.train.Example -------------------------------------------------------------------------


def test_parse_example_of_the_hand_encoder():
    data = encode_example({
        "0/image_aux1/encoded": bytes_feature(b"\x00\x01\xff" * 4),
        "two": bytes_feature(b"a", b""),
        "0/action": float_feature(0.5, -1.25, 3e6, 0.0),
        "ints": int64_feature(0, 1, 300, -7, 2**62),
        "empty": b"",  # a Feature with no kind set
    })
    out = parse_example(data)
    assert out["0/image_aux1/encoded"] == [b"\x00\x01\xff" * 4]
    assert out["two"] == [b"a", b""]
    assert out["0/action"].dtype == np.float32
    np.testing.assert_array_equal(out["0/action"], np.float32([0.5, -1.25, 3e6, 0.0]))
    assert out["ints"].dtype == np.int64 and out["ints"].tolist() == [0, 1, 300, -7, 2**62]
    assert out["empty"].size == 0


def test_unpacked_numbers_and_unknown_fields():
    unpacked_floats = delimited(2, b"".join(varint(1 << 3 | 5) + struct.pack("<f", v)
                                            for v in (1.5, 2.5)))
    unpacked_ints = delimited(3, b"".join(varint(1 << 3 | 0) + varint(v) for v in (5, -1)))
    unknown = varint(9 << 3 | 0) + varint(12345) + varint(10 << 3 | 1) + bytes(8)
    data = unknown + encode_example({"f": unpacked_floats, "i": unpacked_ints}) + unknown
    out = parse_example(data)
    assert out["f"].tolist() == [1.5, 2.5] and out["i"].tolist() == [5, -1]


@pytest.mark.parametrize("data", [
    b"\x0a\x05\x0a\x03",  # a field longer than its message
    b"\x0a\x02\x0a\xff",  # a varint running off the end
    b"\x0b",  # wire type 3 (groups)
])
def test_malformed_protobuf(data):
    with pytest.raises(DataFormatError, match=r"not a well-formed tf\.train\.Example"):
        parse_example(data)


def test_malformed_record_names_file_and_record(tmp_path):
    good = encode_example({"a": int64_feature(1)})
    path = write_tfrecord(tmp_path / "m.tfrecords", [good, b"\x0a\x05\x0a"])
    with pytest.raises(DataFormatError, match=r"m\.tfrecords: record 1: not a well-formed"):
        list(iter_examples(path))


def _protobuf_example_class():
    """tf.train.Example built from its .proto definition with the protobuf package."""
    pytest.importorskip("google.protobuf")
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    f = descriptor_pb2.FieldDescriptorProto
    proto = descriptor_pb2.FileDescriptorProto(name="sigmavae_test_example.proto",
                                               package="sigmavae_test", syntax="proto3")

    def message(name, *fields, nested=()):
        m = proto.message_type.add(name=name)
        m.field.extend(fields)
        m.nested_type.extend(nested)
        return m

    rep, opt = f.LABEL_REPEATED, f.LABEL_OPTIONAL
    message("BytesList", f(name="value", number=1, type=f.TYPE_BYTES, label=rep))
    message("FloatList", f(name="value", number=1, type=f.TYPE_FLOAT, label=rep))
    message("Int64List", f(name="value", number=1, type=f.TYPE_INT64, label=rep))
    feature = message(
        "Feature",
        *(f(name=n, number=i, type=f.TYPE_MESSAGE, label=opt, type_name=f".sigmavae_test.{t}",
            oneof_index=0)
          for i, (n, t) in enumerate([("bytes_list", "BytesList"), ("float_list", "FloatList"),
                                      ("int64_list", "Int64List")], 1)))
    feature.oneof_decl.add(name="kind")
    entry = descriptor_pb2.DescriptorProto(name="FeatureEntry")
    entry.field.extend([f(name="key", number=1, type=f.TYPE_STRING, label=opt),
                        f(name="value", number=2, type=f.TYPE_MESSAGE, label=opt,
                          type_name=".sigmavae_test.Feature")])
    entry.options.map_entry = True
    message("Features", f(name="feature", number=1, type=f.TYPE_MESSAGE, label=rep,
                          type_name=".sigmavae_test.Features.FeatureEntry"), nested=[entry])
    message("Example", f(name="features", number=1, type=f.TYPE_MESSAGE, label=opt,
                         type_name=".sigmavae_test.Features"))
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("sigmavae_test.Example"))


def test_example_round_trips_with_protobuf():
    example_class = _protobuf_example_class()
    ex = example_class()
    ex.features.feature["0/image_aux1/encoded"].bytes_list.value.append(bytes(range(256)) * 48)
    ex.features.feature["0/action"].float_list.value.extend([0.25, -3.0, 1e-3, 7.5])
    ex.features.feature["n"].int64_list.value.extend([-(2**63), 0, 2**63 - 1])
    ours = parse_example(ex.SerializeToString())
    assert ours["0/image_aux1/encoded"] == [bytes(range(256)) * 48]
    np.testing.assert_array_equal(ours["0/action"], np.float32([0.25, -3.0, 1e-3, 7.5]))
    assert ours["n"].tolist() == [-(2**63), 0, 2**63 - 1]
    # and protobuf reads what the hand encoder (used for the BAIR fixtures) writes
    data = encode_example({"5/endeffector_pos": float_feature(1.0, 2.0, 3.0),
                           "5/image_aux1/encoded": bytes_feature(b"xyz"),
                           "k": int64_feature(-2, 9)})
    back = example_class.FromString(data).features.feature
    assert list(back["5/endeffector_pos"].float_list.value) == [1.0, 2.0, 3.0]
    assert list(back["5/image_aux1/encoded"].bytes_list.value) == [b"xyz"]
    assert list(back["k"].int64_list.value) == [-2, 9]

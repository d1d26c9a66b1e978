"""A small TFRecord reader of our own: record framing, CRC-32C and ``tf.train.Example`` decoding.

No TensorFlow. A TFRecord file is a sequence of records, each (all integers little-endian)::

    uint64  length
    uint32  masked_crc32c(length bytes)
    byte    data[length]
    uint32  masked_crc32c(data)

where ``masked_crc32c(b) = ((c >> 15) | (c << 17)) + 0xA282EAD8 (mod 2**32)`` with
``c = crc32c(b)``, the CRC-32C (Castagnoli) checksum. The data of each record here is a serialised
``tf.train.Example`` protobuf::

    Example   { Features features = 1; }
    Features  { map<string, Feature> feature = 1; }   // entries: { key = 1; value = 2; }
    Feature   { oneof kind { BytesList bytes_list = 1; FloatList float_list = 2;
                             Int64List int64_list = 3; } }
    BytesList { repeated bytes value = 1; }
    FloatList { repeated float value = 1 [packed = true]; }
    Int64List { repeated int64 value = 1 [packed = true]; }

:func:`parse_example` decodes exactly that from the protobuf wire format (varints, fixed32/64
and length-delimited fields; unknown fields are skipped, packed and unpacked repeated numbers are
both read). :func:`crc32c` is vectorised with numpy (independent lanes combined with the CRC's
linearity over GF(2)), so checking gigabytes of records takes seconds per gigabyte, not hours.

Every problem is a :class:`~sigmavae.data.errors.DataFormatError` whose one-line message names the
file, the record (0-based) and its byte offset.
"""

from __future__ import annotations

import functools
import os
import struct
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from .errors import DataFormatError

#: CRC-32C (Castagnoli) polynomial, bit-reversed.
CRC32C_POLY = 0x82F63B78
#: The constant TFRecord adds to a rotated CRC ("masking").
MASK_DELTA = 0xA282EAD8
#: Bytes of a record around its data: length (8), its CRC (4), the data's CRC (4).
HEADER_BYTES = 12
FOOTER_BYTES = 4
#: Data at least this long goes through the vectorised CRC; shorter data through a plain loop.
_LANES_THRESHOLD = 2048
_U32 = 0xFFFFFFFF

#: A decoded feature: ``list[bytes]`` (bytes_list), float32 ``(n,)`` (float_list) or int64
#: ``(n,)`` (int64_list) numpy arrays.
FeatureValue = list[bytes] | np.ndarray


def _make_table() -> np.ndarray:
    """The 256-entry byte table of the reflected CRC-32C, uint32."""
    table = np.arange(256, dtype=np.uint32)
    for _ in range(8):
        table = np.where(table & 1, (table >> 1) ^ np.uint32(CRC32C_POLY), table >> 1)
    return table.astype(np.uint32)


_TABLE = _make_table()
_TABLE_LIST = [int(v) for v in _TABLE]


def _crc_register_loop(data: bytes | memoryview, crc: int) -> int:
    """The CRC register after ``data`` starting from ``crc`` (no final xor), one byte at a time."""
    table = _TABLE_LIST
    for b in bytes(data):
        crc = table[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc


def _operator_tables(columns: np.ndarray) -> np.ndarray:
    """Byte tables ``(4, 256)`` of the GF(2)-linear map on 32-bit values with ``columns[i]`` the
    image of bit ``i``: ``map(x) = t[0][x & 255] ^ t[1][(x >> 8) & 255] ^ ...``."""
    values = np.arange(256, dtype=np.uint32)
    tables = np.zeros((4, 256), dtype=np.uint32)
    for k in range(4):
        for j in range(8):
            tables[k] ^= np.where((values >> j) & 1, columns[8 * k + j], np.uint32(0))
    return tables


def _apply(tables: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Apply the linear map given by its byte ``tables`` to each uint32 value of ``x``."""
    return (tables[0][x & 0xFF] ^ tables[1][(x >> 8) & 0xFF]
            ^ tables[2][(x >> 16) & 0xFF] ^ tables[3][x >> 24])


@functools.lru_cache(maxsize=64)
def _shift_tables(n_bytes: int, levels: int) -> tuple[np.ndarray, ...]:
    """Byte tables of the maps "feed ``n_bytes * 2**j`` zero bytes to the register", ``j <
    levels``: the operators that move a lane's CRC past the lanes to its right."""
    one = np.uint32(1) << np.arange(32, dtype=np.uint32)
    step = _TABLE[one & 0xFF] ^ (one >> 8)  # columns of "one zero byte"
    result = one.copy()  # identity; then exponentiate by squaring
    power, e = _operator_tables(step), n_bytes
    while e:
        if e & 1:
            result = _apply(power, result)
        e >>= 1
        if e:
            power = _operator_tables(_apply(power, _apply(power, one)))
    tables = [_operator_tables(result)]
    for _ in range(1, levels):
        last = tables[-1]
        tables.append(_operator_tables(_apply(last, _apply(last, one))))
    return tuple(tables)


def _crc_register_lanes(data: np.ndarray) -> int:
    """The CRC register (initial value 0, no final xor) after uint8 ``data``, vectorised.

    The data is zero-padded on the left (leading zero bytes leave a zero register unchanged) to
    ``lanes * width`` bytes, the lanes' registers are run side by side, then combined pairwise:
    ``crc(A + B) = shift_{len(B)}(crc(A)) ^ crc(B)``.
    """
    n = data.size
    lanes = 1 << max(0, min(14, (n // 32).bit_length() - 1))  # about 32+ bytes per lane
    width = -(-n // lanes)
    padded = np.zeros(lanes * width, dtype=np.uint8)
    padded[lanes * width - n:] = data
    columns = np.ascontiguousarray(padded.reshape(lanes, width).T)  # (width, lanes) uint8
    crc = np.zeros(lanes, dtype=np.uint32)
    table = _TABLE
    for column in columns:
        crc = table[(crc & 0xFF) ^ column] ^ (crc >> 8)
    for shift in _shift_tables(width, lanes.bit_length() - 1):
        crc = _apply(shift, crc[0::2]) ^ crc[1::2]
    return int(crc[0])


def crc32c(data: bytes | bytearray | memoryview | np.ndarray) -> int:
    """CRC-32C (Castagnoli, as in iSCSI and TFRecord) of ``data``: an unsigned 32-bit int.

    ``crc32c(b"123456789") == 0xE3069283``.
    """
    if isinstance(data, np.ndarray):
        buf = np.ascontiguousarray(data).reshape(-1).view(np.uint8)
    else:
        buf = np.frombuffer(data, dtype=np.uint8)
    if buf.size < _LANES_THRESHOLD:
        return _crc_register_loop(buf.tobytes(), _U32) ^ _U32
    # the initial value 0xFFFFFFFF is the same as xoring it into the first four bytes
    head = buf[:4] ^ np.uint8(0xFF)
    return _crc_register_lanes(np.concatenate([head, buf[4:]])) ^ _U32


def masked_crc32c(data: bytes | bytearray | memoryview | np.ndarray) -> int:
    """The masked CRC-32C TFRecord stores: ``((c >> 15) | (c << 17)) + 0xA282EAD8 mod 2**32``."""
    c = crc32c(data)
    return ((((c >> 15) | (c << 17)) & _U32) + MASK_DELTA) & _U32


# -- record framing ---------------------------------------------------------------------------


def _where(path: Path, index: int, offset: int) -> str:
    return f"{path}: record {index} (at byte {offset})"


def _read_header(f, path: Path, index: int, offset: int, size: int, check_crc: bool) -> int:
    """Read one record's 12-byte header at ``offset``; the data length, checked to fit."""
    header = f.read(HEADER_BYTES)
    if len(header) < HEADER_BYTES:
        raise DataFormatError(
            f"{_where(path, index, offset)}: truncated TFRecord file: {len(header)} bytes left "
            f"where a {HEADER_BYTES}-byte record header (length + CRC) should be"
        )
    (length,) = struct.unpack("<Q", header[:8])
    (length_crc,) = struct.unpack("<I", header[8:])
    if check_crc and masked_crc32c(header[:8]) != length_crc:
        raise DataFormatError(
            f"{_where(path, index, offset)}: corrupt TFRecord file: the CRC of the record length "
            "does not match (not a TFRecord file, or damaged)"
        )
    end = offset + HEADER_BYTES + length + FOOTER_BYTES
    if end > size:
        raise DataFormatError(
            f"{_where(path, index, offset)}: truncated TFRecord file: the record needs "
            f"{length} data bytes and a CRC, but the file ends {end - size} bytes early"
        )
    return length


def iter_records(path: str | Path, *, check_crc: bool = True) -> Iterator[bytes]:
    """Yield the data of each record of the TFRecord file ``path``, in order.

    Args:
        path: the file.
        check_crc: check both masked CRC-32Cs of every record (the length's and the data's).

    Raises:
        DataFormatError: a CRC does not match, or the file is truncated (names the file, the
            record and its byte offset).
    """
    path = Path(path)
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        offset, index = 0, 0
        while offset < size:
            length = _read_header(f, path, index, offset, size, check_crc)
            data = f.read(length)
            (data_crc,) = struct.unpack("<I", f.read(FOOTER_BYTES))
            if check_crc and masked_crc32c(data) != data_crc:
                raise DataFormatError(
                    f"{_where(path, index, offset)}: corrupt TFRecord file: the CRC of the "
                    f"record's {length} data bytes does not match (damaged file?)"
                )
            yield data
            offset += HEADER_BYTES + length + FOOTER_BYTES
            index += 1


def count_records(path: str | Path, *, check_crc: bool = True) -> int:
    """The number of records in ``path``, reading only their headers (data is skipped).

    Raises:
        DataFormatError: as :func:`iter_records`, for the headers and the file's length.
    """
    path = Path(path)
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        offset, index = 0, 0
        while offset < size:
            length = _read_header(f, path, index, offset, size, check_crc)
            offset += HEADER_BYTES + length + FOOTER_BYTES
            f.seek(offset)
            index += 1
    return index


# -- protobuf wire format ---------------------------------------------------------------------


class _Malformed(Exception):
    """Internal: a protobuf message does not decode (re-raised with the file's name)."""


def _varint(buf: memoryview, pos: int, end: int) -> tuple[int, int]:
    """Decode the varint at ``pos``: ``(value, next position)``."""
    result, shift = 0, 0
    while True:
        if pos >= end:
            raise _Malformed("a varint runs past the end of its message")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
        if shift >= 70:
            raise _Malformed("a varint is longer than 10 bytes")


def _fields(buf: memoryview, pos: int, end: int) -> Iterator[tuple[int, int, int | memoryview]]:
    """``(field number, wire type, value)`` of each field of the message ``buf[pos:end]``:
    an int for varints and fixed32/64 (raw bits), a memoryview for length-delimited fields."""
    while pos < end:
        key, pos = _varint(buf, pos, end)
        number, wire = key >> 3, key & 7
        value: int | memoryview
        if wire == 0:
            value, pos = _varint(buf, pos, end)
        elif wire == 1 or wire == 5:
            width = 8 if wire == 1 else 4
            if pos + width > end:
                raise _Malformed(f"a {width * 8}-bit field runs past the end of its message")
            value = int.from_bytes(buf[pos:pos + width], "little")
            pos += width
        elif wire == 2:
            length, pos = _varint(buf, pos, end)
            if pos + length > end:
                raise _Malformed(f"field {number} ({length} bytes) runs past the end of its "
                                 "message")
            value = buf[pos:pos + length]
            pos += length
        else:
            raise _Malformed(f"field {number} has wire type {wire} (groups are not supported)")
        yield number, wire, value


def _signed64(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def _feature(buf: memoryview) -> FeatureValue:
    """One ``Feature`` message: its bytes, float or int64 list (the last kind set wins)."""
    kind: FeatureValue | None = None
    for number, wire, value in _fields(buf, 0, len(buf)):
        if wire != 2 or number not in (1, 2, 3):
            continue  # unknown field
        assert isinstance(value, memoryview)
        if number == 1:  # BytesList
            kind = [bytes(v) for n, w, v in _fields(value, 0, len(value))
                    if n == 1 and w == 2 and isinstance(v, memoryview)]
        elif number == 2:  # FloatList: packed float32s (wire 2) or single floats (wire 5)
            floats: list[np.ndarray] = []
            for n, w, v in _fields(value, 0, len(value)):
                if n != 1:
                    continue
                if w == 2 and isinstance(v, memoryview):
                    if len(v) % 4:
                        raise _Malformed(f"a packed float list has {len(v)} bytes, not 4 per value")
                    floats.append(np.frombuffer(v, dtype="<f4"))
                elif w == 5 and isinstance(v, int):
                    floats.append(np.array([v], dtype="<u4").view("<f4"))
            kind = (np.concatenate(floats) if floats else np.zeros(0, "<f4")).astype(np.float32)
        else:  # Int64List: packed varints (wire 2) or single varints (wire 0)
            ints: list[int] = []
            for n, w, v in _fields(value, 0, len(value)):
                if n != 1:
                    continue
                if w == 2 and isinstance(v, memoryview):
                    pos = 0
                    while pos < len(v):
                        item, pos = _varint(v, pos, len(v))
                        ints.append(_signed64(item))
                elif w == 0 and isinstance(v, int):
                    ints.append(_signed64(v))
            kind = np.array(ints, dtype=np.int64)
    if kind is None:
        return np.zeros(0, dtype=np.float32)  # an empty Feature (no kind set)
    return kind


def parse_example(data: bytes | memoryview) -> dict[str, FeatureValue]:
    """Decode one serialised ``tf.train.Example``: ``{feature name: values}``.

    Values are ``list[bytes]`` for a bytes_list, float32 ``(n,)`` arrays for a float_list and
    int64 ``(n,)`` arrays for an int64_list.

    Raises:
        DataFormatError: the bytes are not a well-formed protobuf message of that shape.
    """
    buf = memoryview(data)
    out: dict[str, FeatureValue] = {}
    try:
        for number, wire, features in _fields(buf, 0, len(buf)):
            if number != 1 or wire != 2:
                continue
            assert isinstance(features, memoryview)
            for n, w, entry in _fields(features, 0, len(features)):
                if n != 1 or w != 2:
                    continue
                assert isinstance(entry, memoryview)
                key: str | None = None
                value: FeatureValue = np.zeros(0, dtype=np.float32)
                for en, ew, ev in _fields(entry, 0, len(entry)):
                    if ew == 2 and isinstance(ev, memoryview):
                        if en == 1:
                            key = bytes(ev).decode("utf-8")
                        elif en == 2:
                            value = _feature(ev)
                if key is None:
                    raise _Malformed("a feature map entry has no name")
                out[key] = value
    except (_Malformed, UnicodeDecodeError) as exc:
        raise DataFormatError(f"not a well-formed tf.train.Example: {exc}") from None
    return out


def iter_examples(path: str | Path, *, check_crc: bool = True,
                  ) -> Iterator[dict[str, FeatureValue]]:
    """:func:`parse_example` of each record of ``path``.

    Raises:
        DataFormatError: as :func:`iter_records`, or a record is not a ``tf.train.Example``
            (names the file and the record).
    """
    for index, data in enumerate(iter_records(path, check_crc=check_crc)):
        try:
            yield parse_example(data)
        except DataFormatError as exc:
            raise DataFormatError(f"{path}: record {index}: {exc}") from None

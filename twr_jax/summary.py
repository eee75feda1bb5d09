"""A TensorBoard scalar writer that needs neither TensorFlow nor protobuf.

An event file is a TFRecord stream of serialised `tensorflow.Event` protocol
buffers. For scalars only four message fields are needed, so they are encoded
by hand here:

  Event:   wall_time = 1 (double), step = 2 (int64),
           file_version = 3 (string), summary = 5 (Summary)
  Summary: value = 1 (repeated Value)
  Value:   tag = 1 (string), simple_value = 2 (float)

Each record is framed as: uint64 length, masked CRC-32C of the length, the
bytes, masked CRC-32C of the bytes (all little-endian).
"""

import math
import os
import socket
import struct
import time

_CRC32C_POLY = 0x82F63B78  # Castagnoli, bit-reflected.
_MASK_DELTA = 0xA282EAD8
_FILE_VERSION = 3  # Event field numbers.
_SUMMARY = 5


def _make_crc32c_table() -> tuple[int, ...]:
  table = []
  for byte in range(256):
    crc = byte
    for _ in range(8):
      crc = (crc >> 1) ^ (_CRC32C_POLY if crc & 1 else 0)
    table.append(crc)
  return tuple(table)


_CRC32C_TABLE = _make_crc32c_table()


def crc32c(data: bytes) -> int:
  """CRC-32C (Castagnoli) of `data`; byte-at-a-time, fine for small records."""
  crc = 0xFFFFFFFF
  for byte in data:
    crc = _CRC32C_TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
  return crc ^ 0xFFFFFFFF


def _masked_crc32c(data: bytes) -> int:
  # TFRecord masks the CRC so that CRCs of data containing CRCs stay robust.
  crc = crc32c(data)
  return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


def _varint(value: int) -> bytes:
  # Negative int64 values are encoded as their 64-bit two's complement.
  value &= (1 << 64) - 1
  out = bytearray()
  while value > 0x7F:
    out.append((value & 0x7F) | 0x80)
    value >>= 7
  out.append(value)
  return bytes(out)


def _field(number: int, wire_type: int, payload: bytes) -> bytes:
  return _varint((number << 3) | wire_type) + payload


def _length_delimited(number: int, payload: bytes) -> bytes:
  return _field(number, 2, _varint(len(payload)) + payload)


def _float32(value: float) -> bytes:
  try:
    return struct.pack('<f', value)
  except OverflowError:
    # Beyond float32's range: round to ±inf, as a float32 cast would.
    return struct.pack('<f', math.copysign(math.inf, value))


def _event(step: int, field_number: int, payload: bytes) -> bytes:
  """Serialises an Event: wall_time, step and one length-delimited field."""
  return (
      _field(1, 1, struct.pack('<d', time.time()))
      + _field(2, 0, _varint(step))
      + _length_delimited(field_number, payload)
  )


def _scalar_summary(tag: str, value: float) -> bytes:
  value_msg = _length_delimited(1, tag.encode('utf-8')) + _field(
      2, 5, _float32(value)
  )
  return _length_delimited(1, value_msg)


class SummaryWriter:
  """Appends scalar summaries to a new TensorBoard event file.

  Usage:
    with SummaryWriter(logdir) as writer:
      writer.scalar('train/loss', 1.5, step=100)

  Writes are buffered: call `flush()` when they must reach the disk.

  Attributes:
    path: the event file, `logdir/events.out.tfevents.<time>.<hostname>`.
  """

  def __init__(self, logdir: str | os.PathLike[str]):
    os.makedirs(logdir, exist_ok=True)
    self.path = os.path.join(
        logdir,
        f'events.out.tfevents.{int(time.time())}.{socket.gethostname()}',
    )
    # Appending keeps two writers opened in the same second from clobbering
    # each other's file; a second header record is still a valid stream.
    self._file = open(self.path, 'ab')
    self._write_record(_event(0, _FILE_VERSION, b'brain.Event:2'))

  def scalar(self, tag: str, value: float, step: int) -> None:
    """Records `value` (stored as float32) for `tag` at `step`."""
    self._write_record(
        _event(int(step), _SUMMARY, _scalar_summary(tag, float(value)))
    )

  def flush(self) -> None:
    self._file.flush()

  def close(self) -> None:
    if not self._file.closed:
      self._file.close()

  def __enter__(self) -> 'SummaryWriter':
    return self

  def __exit__(self, *exc_info) -> None:
    self.close()

  def _write_record(self, data: bytes) -> None:
    length = struct.pack('<Q', len(data))
    self._file.write(
        length
        + struct.pack('<I', _masked_crc32c(length))
        + data
        + struct.pack('<I', _masked_crc32c(data))
    )

'use strict';
// Field operations for update({ ops }) and the reading of a list field: the
// same names as the proto and the Python client (increment, append,
// setIfAbsent, entries).

const { toBuffer } = require('./draft');

const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;

/** Adds `by` (signed 64-bit; number, bigint or decimal string) to the integer the field holds (0 when absent). */
function increment(field, by = 1) {
  const ok = typeof by === 'bigint'
    || (typeof by === 'number' && Number.isSafeInteger(by))
    || (typeof by === 'string' && /^-?\d+$/.test(by));
  if (!ok) throw new TypeError('increment: by must be a bigint, a safe integer or a decimal string');
  const n = BigInt(by);
  if (n < INT64_MIN || n > INT64_MAX) throw new RangeError('increment: by must be within the signed 64-bit range');
  return { field, increment: n.toString() };
}

/** Appends `value` to the list the field holds, keeping its last `keepLast` entries. */
function append(field, value, keepLast) {
  return { field, append: { value: toBuffer(value, field), keepLast } };
}

/** Sets the field to `value` unless it exists. */
function setIfAbsent(field, value) {
  return { field, setIfAbsent: toBuffer(value, field) };
}

/**
 * The entries of a list field, oldest first: the value is a protobuf-encoded
 * sessiond.v1.FieldList (per entry 0x0A, a varint length, the bytes).
 */
function entries(value) {
  const buf = Buffer.from(value);
  const out = [];
  let pos = 0;
  while (pos < buf.length) {
    if (buf[pos] !== 0x0a) throw new TypeError('entries: the value is not a FieldList');
    let len = 0;
    let shift = 0;
    let i = pos + 1;
    for (;;) {
      if (i >= buf.length || shift > 28) throw new TypeError('entries: the value is not a FieldList');
      const b = buf[i++];
      len += (b & 0x7f) * 2 ** shift;
      shift += 7;
      if (b < 0x80) break;
    }
    if (i + len > buf.length) throw new TypeError('entries: the value is not a FieldList');
    out.push(buf.subarray(i, i + len));
    pos = i + len;
  }
  return out;
}

module.exports = { increment, append, setIfAbsent, entries };

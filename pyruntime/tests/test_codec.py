"""Frame codec: round trips, rejections, and a seeded fuzz of the decoder."""

import random
import struct
import unittest

from worker_harness import w


def roundtrip(frame):
    ftype, fields, end = w.decode_frame(frame)
    assert end == len(frame), (end, len(frame))
    return ftype, fields


class RoundTripTest(unittest.TestCase):

    def test_request(self):
        env = {'REQUEST_METHOD': 'POST', 'PATH_INFO': '/caf\xc3\xa9', 'HTTP_X': ''}
        ftype, (flags, parts, body) = roundtrip(w.encode_request(0, env, b'body\0bytes'))
        self.assertEqual(ftype, w.REQUEST)
        self.assertEqual(flags, 0)
        it = iter(parts)
        self.assertEqual(dict(zip(it, it)), env)
        self.assertEqual(body, b'body\0bytes')

    def test_request_stream_and_empty_environ(self):
        ftype, fields = roundtrip(w.encode_request(w.FLAG_STREAM, {}))
        self.assertEqual((ftype, fields), (w.REQUEST, (w.FLAG_STREAM, [], b'')))

    def test_data(self):
        for flags, data in [(0, b'abc'), (w.FLAG_EOF, b''), (w.FLAG_EOF, b'tail'),
                            (w.FLAG_ABORTED, b'')]:
            self.assertEqual(roundtrip(w.encode_data(flags, data)), (w.DATA, (flags, data)))

    def test_cancel_end(self):
        self.assertEqual(roundtrip(w.encode_cancel()), (w.CANCEL, ()))
        self.assertEqual(roundtrip(w.encode_end()), (w.END, ()))

    def test_read(self):
        self.assertEqual(roundtrip(w.encode_read(65536)), (w.READ, (65536,)))
        self.assertEqual(roundtrip(w.encode_read(2 ** 32 - 1)), (w.READ, (2 ** 32 - 1,)))

    def test_headers(self):
        block = '200 OK\0Content-Type\0text/plain\0X-L\0\xe9'.encode('latin-1')
        for flags in (0, w.FLAG_FINAL):
            ftype, fields = roundtrip(w.encode_headers(flags, block, b'hi'))
            self.assertEqual(ftype, w.HEADERS)
            self.assertEqual(fields, (flags, '200 OK',
                                      [('Content-Type', 'text/plain'), ('X-L', '\xe9')], b'hi'))
        self.assertEqual(roundtrip(w.encode_headers(0, b'204 No Content')),
                         (w.HEADERS, (0, '204 No Content', [], b'')))

    def test_headers_prefix_matches(self):
        block = b'200 OK\0A\0b'
        self.assertEqual(w.headers_prefix(1, block, 3) + b'xyz',
                         w.encode_headers(1, block, b'xyz'))

    def test_body(self):
        self.assertEqual(roundtrip(w.encode_body(b'\x00\xff')), (w.BODY, (b'\x00\xff',)))

    def test_file(self):
        self.assertEqual(roundtrip(w.encode_file(0, -1)), (w.FILE, (0, -1)))
        self.assertEqual(roundtrip(w.encode_file(2 ** 40, 7)), (w.FILE, (2 ** 40, 7)))

    def test_error_and_boot_error(self):
        text = 'Traceback\n  caf\xe9 \u2603\n'
        self.assertEqual(roundtrip(w.encode_error(text)), (w.ERROR, (text,)))
        self.assertEqual(roundtrip(w.encode_boot_error(text)), (w.BOOT_ERROR, (text,)))

    def test_error_text_never_fails(self):
        # Lone surrogates (e.g. from surrogateescape file names) must not break encoding.
        ftype, (text,) = roundtrip(w.encode_error('bad \udcff'))
        self.assertEqual(ftype, w.ERROR)
        self.assertIn('bad', text)

    def test_error_truncated_to_frame_limit(self):
        frame = w.encode_error('\u2603' * (w.MAX_PAYLOAD // 3 + 10))
        ftype, (text,) = roundtrip(frame)
        self.assertLessEqual(len(frame) - 5, w.MAX_PAYLOAD)
        self.assertEqual(set(text), {'\u2603'})

    def test_log(self):
        for level in (w.LOG_INFO, w.LOG_WARNING, w.LOG_ERROR):
            self.assertEqual(roundtrip(w.encode_log(level, 'msg \u2603')),
                             (w.LOG, (level, 'msg \u2603')))

    def test_ready(self):
        self.assertEqual(roundtrip(w.encode_ready(123, '3.11.7')),
                         (w.READY, ({'pid': 123, 'python': '3.11.7'},)))

    def test_every_type_covered(self):
        frames = [w.encode_request(0, {}), w.encode_data(1), w.encode_cancel(),
                  w.encode_headers(1, b'200 OK'), w.encode_body(b'x'), w.encode_file(0, -1),
                  w.encode_end(), w.encode_read(1), w.encode_error('e'), w.encode_log(0, 'l'),
                  w.encode_ready(1, '3'), w.encode_boot_error('b'),
                  w.encode_frame(w.WS_RECEIVE, b'\x01\x00'),
                  w.encode_ws_close(w.WS_DISCONNECT, 1000, ''),
                  w.encode_frame(w.WS_ACCEPT, b'chat\0X-A\0b'), w.encode_ws_message(True, b'x'),
                  w.encode_ws_close(w.WS_CLOSE, 4000, 'bye'), w.encode_frame(w.TRAILERS, b'\0X-T\0v'),
                  w.encode_frame(w.INFORMATIONAL, b'103\0Link\0</a.css>'),
                  w.encode_ring_body(3, 65536), w.encode_ring(32, 65536, 4096),
                  w.encode_data_ring(1, 10)]
        self.assertEqual({roundtrip(f)[0] for f in frames}, set(w.FRAME_TYPES))

    def test_ring_frames(self):
        self.assertEqual(roundtrip(w.encode_ring_body(31, 65536)), (w.RING_BODY, (31, 65536)))
        self.assertEqual(roundtrip(w.encode_ring(32, 65536, 4096)), (w.RING, (32, 65536, 4096)))
        self.assertEqual(roundtrip(w.encode_data_ring(1, 10)), (w.DATA_RING, (1, 10)))
        for bad in (w.encode_frame(w.RING_BODY, b'\0' * 4), w.encode_frame(w.RING, b'\0' * 8)):
            with self.assertRaises(w.ProtocolError):
                w.decode_frame(bad)

    def test_websocket_message_over_one_frame(self):
        # A 16 MiB text message goes in two WS_SEND frames, the first with MORE, cut
        # between characters.
        data = ('x' + '\u20ac' * (w.MAX_PAYLOAD // 3)).encode('utf-8')
        raw = w.encode_ws_message(False, data)
        first = int.from_bytes(raw[:4], 'big')
        self.assertLess(first, w.MAX_PAYLOAD + 1)
        self.assertEqual(raw[5], w.FLAG_MORE)
        part1 = raw[6:5 + first]
        part1.decode('utf-8')  # whole characters
        rest = raw[5 + first:]
        self.assertEqual(rest[5], 0)
        self.assertEqual(part1 + rest[6:], data)

    def test_websocket_frames(self):
        self.assertEqual(roundtrip(w.encode_ws_message(False, 'caf\xe9'.encode())),
                         (w.WS_SEND, (False, 'caf\xe9'.encode())))
        self.assertEqual(roundtrip(w.encode_ws_close(w.WS_CLOSE, 4001, 'see you')),
                         (w.WS_CLOSE, (4001, 'see you')))
        self.assertEqual(roundtrip(w.encode_frame(w.WS_ACCEPT, b'chat.v2\0X-A\0b')),
                         (w.WS_ACCEPT, ('chat.v2', [('X-A', 'b')])))
        with self.assertRaises(w.ProtocolError):
            w.decode_frame(w.encode_frame(w.WS_SEND, b'\x04x'))  # unknown flag
        with self.assertRaises(w.ProtocolError):
            w.decode_frame(w.encode_frame(w.WS_CLOSE, b'\x03'))  # short close

    def test_consecutive_frames(self):
        buf = w.encode_cancel() + w.encode_request(0, {'A': 'b'}) + w.encode_data(1, b'z')
        pos, types = 0, []
        while pos < len(buf):
            ftype, _, pos = w.decode_frame(buf, pos)
            types.append(ftype)
        self.assertEqual(types, [w.CANCEL, w.REQUEST, w.DATA])


class RejectTest(unittest.TestCase):

    def assertRejected(self, frame):
        with self.assertRaises(w.ProtocolError):
            w.decode_frame(frame)

    def test_unknown_type(self):
        self.assertRejected(struct.pack('>IB', 0, 0x7f))

    def test_length_over_limit(self):
        self.assertRejected(struct.pack('>IB', w.MAX_PAYLOAD + 1, w.BODY))
        self.assertRejected(struct.pack('>IB', 0xffffffff, w.REQUEST))

    def test_fixed_lengths(self):
        self.assertRejected(struct.pack('>IB', 1, w.CANCEL) + b'x')
        self.assertRejected(struct.pack('>IB', 3, w.READ) + b'xyz')
        self.assertRejected(struct.pack('>IB', 15, w.FILE) + bytes(15))

    def test_truncated(self):
        self.assertRejected(b'\0\0')
        self.assertRejected(w.encode_body(b'abc')[:-1])

    def test_request_payloads(self):
        self.assertRejected(w.encode_frame(w.REQUEST, b'\0\0\0'))
        self.assertRejected(w.encode_frame(w.REQUEST, struct.pack('>BI', 0, 10) + b'abc'))
        self.assertRejected(w.encode_frame(w.REQUEST, struct.pack('>BI', 0, 5) + b'a\0b\0c'))
        self.assertRejected(w.encode_frame(w.REQUEST, struct.pack('>BI', 4, 0)))
        self.assertRejected(w.encode_request(w.FLAG_STREAM, {}, b'body'))

    def test_data_payloads(self):
        self.assertRejected(w.encode_frame(w.DATA))
        self.assertRejected(w.encode_data(0))
        self.assertRejected(w.encode_data(w.FLAG_ABORTED, b'x'))
        self.assertRejected(w.encode_data(4, b'x'))

    def test_other_payloads(self):
        self.assertRejected(w.encode_read(0))
        self.assertRejected(w.encode_frame(w.BODY))
        self.assertRejected(w.encode_frame(w.FILE, struct.pack('>Qq', 0, -2)))
        self.assertRejected(w.encode_frame(w.ERROR, b'\xff'))
        self.assertRejected(w.encode_frame(w.LOG, b'\x03x'))
        self.assertRejected(w.encode_frame(w.LOG))
        self.assertRejected(w.encode_frame(w.READY, b'{"pid": "1"}'))
        self.assertRejected(w.encode_frame(w.READY, b'[' * 100000))
        self.assertRejected(w.encode_frame(w.HEADERS, struct.pack('>BI', 0, 5) + b'200\0A'))
        self.assertRejected(w.encode_frame(w.HEADERS, struct.pack('>BI', 2, 0)))


def _valid_frames(rng):
    env = {'REQUEST_METHOD': 'GET', 'PATH_INFO': '/' + 'x' * rng.randrange(20)}
    return [
        w.encode_request(0, env, bytes(rng.randrange(256) for _ in range(rng.randrange(8)))),
        w.encode_request(w.FLAG_STREAM, env),
        w.encode_data(0, b'abc'), w.encode_data(w.FLAG_EOF), w.encode_data(w.FLAG_ABORTED),
        w.encode_cancel(), w.encode_read(rng.randrange(1, 2 ** 20)),
        w.encode_headers(rng.choice((0, 1)), b'200 OK\0A\0b', b'body'),
        w.encode_body(b'chunk'), w.encode_file(rng.randrange(2 ** 30), -1), w.encode_end(),
        w.encode_error('oops'), w.encode_log(1, 'warn'), w.encode_ready(42, '3.9.18'),
        w.encode_boot_error('tb'),
    ]


def _mutate(rng, frame):
    frame = bytearray(frame)
    op = rng.randrange(6)
    if op == 0 and frame:  # bit flips
        for _ in range(rng.randrange(1, 4)):
            i = rng.randrange(len(frame))
            frame[i] ^= 1 << rng.randrange(8)
    elif op == 1:  # truncation
        del frame[rng.randrange(len(frame) + 1):]
    elif op == 2:  # wrong length
        frame[:4] = struct.pack('>I', max(0, len(frame) - 5 + rng.randrange(-3, 4)))
    elif op == 3:  # huge length
        frame[:4] = struct.pack('>I', rng.choice((w.MAX_PAYLOAD, w.MAX_PAYLOAD + 1,
                                                  2 ** 32 - 1, rng.randrange(2 ** 32))))
    elif op == 4:  # unknown or wrong type
        frame[4] = rng.randrange(256)
    else:  # garbage appended inside the payload
        frame += bytes(rng.randrange(256) for _ in range(rng.randrange(1, 6)))
        frame[:4] = struct.pack('>I', len(frame) - 5)
    return bytes(frame)


class FuzzTest(unittest.TestCase):

    def test_decoder_only_raises_protocol_error(self):
        rng = random.Random(20240601)
        decoded = rejected = 0
        for case in range(5000):
            if case % 5 == 0:
                frame = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 40)))
            else:
                frame = _mutate(rng, rng.choice(_valid_frames(rng)))
            try:
                ftype, fields, end = w.decode_frame(frame)
            except w.ProtocolError:
                rejected += 1
                continue
            except Exception as e:  # pragma: no cover - the failure being hunted
                self.fail('case %d: %r raised %r' % (case, frame[:64], e))
            self.assertIn(ftype, w.FRAME_TYPES)
            self.assertLessEqual(end, len(frame))
            decoded += 1
        # Both outcomes must actually be exercised for the test to mean anything.
        self.assertGreater(decoded, 500)
        self.assertGreater(rejected, 500)


if __name__ == '__main__':
    unittest.main()

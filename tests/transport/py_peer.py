# Copyright shmlink authors. SPDX-License-Identifier: MIT
"""Stock-Python peer for shmlink's transport interop tests.

Uses only the standard library's multiprocessing.connection (no shmlink). With --modern,
the handshake functions are replaced by a transcription of CPython 3.12's rules
({digest} prefix, 40 random bytes, legacy MD5 accepted) so a 3.11 interpreter can act as
a 3.12+ peer.

  py_peer.py listen ADDRESS KEY [--modern] [--mode bytes|pickle] [--count N]
  py_peer.py connect ADDRESS KEY [--modern] [--mode bytes|pickle] [--send-first]

ADDRESS: "host:port" (TCP), "@name" (abstract), or a path. The listener prints
"READY <address>" once listening (with the real port for port 0). Both roles echo every
message back until they receive b"close" (bytes mode) or 'close' (pickle mode), then
print "DONE <count>" and exit 0. An AuthenticationError exits with status 3.
"""
import argparse
import hmac
import os
import sys
from multiprocessing import AuthenticationError
import multiprocessing.connection as mpc

# ---- CPython 3.12 handshake (Lib/multiprocessing/connection.py), transcribed
_MD5ONLY_MESSAGE_LENGTH = 20
_MD5_DIGEST_LEN = 16
_LEGACY_LENGTHS = (_MD5ONLY_MESSAGE_LENGTH, _MD5_DIGEST_LEN)
MESSAGE_LENGTH = 40
_ALLOWED_DIGESTS = frozenset({b'md5', b'sha256', b'sha384', b'sha3_256', b'sha3_384'})
_MAX_DIGEST_LEN = max(len(_) for _ in _ALLOWED_DIGESTS)
_CHALLENGE = b'#CHALLENGE#'
_WELCOME = b'#WELCOME#'
_FAILURE = b'#FAILURE#'


def _get_digest_name_and_payload(message):
    if len(message) in _LEGACY_LENGTHS:
        return '', message
    if (message.startswith(b'{') and
            (curly := message.find(b'}', 1, _MAX_DIGEST_LEN + 2)) > 0):
        digest = message[1:curly]
        if digest in _ALLOWED_DIGESTS:
            payload = message[curly + 1:]
            return digest.decode('ascii'), payload
    raise AuthenticationError('unsupported message length, missing digest prefix, '
                              f'or unsupported digest: {message=}')


def _create_response(authkey, message):
    digest_name = _get_digest_name_and_payload(message)[0]
    if not digest_name:
        return hmac.new(authkey, message, 'md5').digest()
    response = hmac.new(authkey, message, digest_name).digest()
    return b'{%s}%s' % (digest_name.encode('ascii'), response)


def _verify_challenge(authkey, message, response):
    response_digest, response_mac = _get_digest_name_and_payload(response)
    response_digest = response_digest or 'md5'
    expected = hmac.new(authkey, message, response_digest).digest()
    if len(expected) != len(response_mac):
        raise AuthenticationError(f'expected {response_digest!r} of length {len(expected)} '
                                  f'got {len(response_mac)}')
    if not hmac.compare_digest(expected, response_mac):
        raise AuthenticationError('digest received was wrong')


def modern_deliver_challenge(connection, authkey, digest_name='sha256'):
    message = os.urandom(MESSAGE_LENGTH)
    message = b'{%s}%s' % (digest_name.encode('ascii'), message)
    connection.send_bytes(_CHALLENGE + message)
    response = connection.recv_bytes(256)
    try:
        _verify_challenge(authkey, message, response)
    except AuthenticationError:
        connection.send_bytes(_FAILURE)
        raise
    else:
        connection.send_bytes(_WELCOME)


def modern_answer_challenge(connection, authkey):
    message = connection.recv_bytes(256)
    if not message.startswith(_CHALLENGE):
        raise AuthenticationError(f'Protocol error, expected challenge: {message=}')
    message = message[len(_CHALLENGE):]
    if len(message) < _MD5ONLY_MESSAGE_LENGTH:
        raise AuthenticationError('challenge too short: {len(message)} bytes')
    digest = _create_response(authkey, message)
    connection.send_bytes(digest)
    response = connection.recv_bytes(256)
    if response != _WELCOME:
        raise AuthenticationError('digest sent was rejected')


def parse_address(text):
    if text.startswith('@'):
        return '\0' + text[1:]
    if '/' not in text and ':' in text:
        host, port = text.rsplit(':', 1)
        return (host, int(port))
    return text


def show_address(addr):
    if isinstance(addr, tuple):
        return f'{addr[0]}:{addr[1]}'
    if isinstance(addr, bytes):
        addr = addr.decode()
    if addr.startswith('\0'):
        return '@' + addr[1:]
    return addr


def echo(conn, mode, send_first):
    count = 0
    if send_first:
        conn.send_bytes(b'hello from python') if mode == 'bytes' else conn.send(
            ['a', 2.5, None, 7, 'hello'])
    while True:
        try:
            msg = conn.recv_bytes() if mode == 'bytes' else conn.recv()
        except EOFError:
            break
        count += 1
        if msg == b'close' or msg == 'close':
            break
        conn.send_bytes(msg) if mode == 'bytes' else conn.send(msg)
    conn.close()
    print('DONE', count, flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('role', choices=['listen', 'connect'])
    ap.add_argument('address')
    ap.add_argument('key')
    ap.add_argument('--modern', action='store_true')
    ap.add_argument('--mode', default='bytes', choices=['bytes', 'pickle'])
    ap.add_argument('--send-first', action='store_true')
    args = ap.parse_args()
    if args.modern:
        mpc.deliver_challenge = modern_deliver_challenge
        mpc.answer_challenge = modern_answer_challenge
    key = args.key.encode()
    try:
        if args.role == 'listen':
            with mpc.Listener(parse_address(args.address), authkey=key) as listener:
                print('READY', show_address(listener.address), flush=True)
                conn = listener.accept()
                echo(conn, args.mode, args.send_first)
        else:
            conn = mpc.Client(parse_address(args.address), authkey=key)
            echo(conn, args.mode, args.send_first)
    except AuthenticationError as e:
        print('AUTHERROR', e, flush=True)
        sys.exit(3)


if __name__ == '__main__':
    main()

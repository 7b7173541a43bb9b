#!/usr/bin/env python3
"""An independent check of the virtual key's clientPIN (CTAP 2.1 §6.5): python-fido2's own
CTAPHID stack, Ctap2 and ClientPin, against `auths sim serve --pin-protocol N` over the sim's
report socket (raw 64-byte CTAPHID reports on a Unix stream socket).

usage: fido2_client_pin.py SOCKET PROTOCOL   (PROTOCOL: 1 or 2)

Sets a PIN, counts a wrong one, gets a token bound to our rp id with the mc and ga
permissions, makes a credential and an assertion with python-fido2's pinUvAuthParam, and
checks the UV flag and the assertion signature with python-fido2's own COSE code. Prints one
line per step; exits non-zero (with the reason) at the first failure.
"""
import hashlib
import os
import socket
import sys

from fido2.cose import CoseKey
from fido2.ctap import CtapError
from fido2.ctap2 import Ctap2
from fido2.ctap2.pin import ClientPin, PinProtocolV1, PinProtocolV2
from fido2.hid import CtapHidDevice
from fido2.hid.base import CtapHidConnection, HidDescriptor

RP = "auths:presence"
REPORT = 64


class SimConnection(CtapHidConnection):
    """CTAPHID reports over the sim's Unix socket."""

    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(20)
        self.sock.connect(path)

    def write_packet(self, data):
        self.sock.sendall(data.ljust(REPORT, b"\0")[:REPORT])

    def read_packet(self):
        buf = b""
        while len(buf) < REPORT:
            chunk = self.sock.recv(REPORT - len(buf))
            if not chunk:
                raise OSError("the sim closed the socket")
            buf += chunk
        return buf

    def close(self):
        self.sock.close()


def step(msg):
    print("ok:", msg, flush=True)


def main():
    path, version = sys.argv[1], int(sys.argv[2])
    desc = HidDescriptor(path, 0, 0, REPORT, REPORT, "auths sim", None)
    dev = CtapHidDevice(desc, SimConnection(path))
    ctap = Ctap2(dev)
    info = ctap.info
    assert info.options.get("clientPin") is False, info.options
    assert info.pin_uv_protocols == [version], info.pin_uv_protocols
    step(f"getInfo: clientPin supported, not set; protocols {info.pin_uv_protocols}")
    protocol = PinProtocolV1() if version == 1 else PinProtocolV2()
    pin = ClientPin(ctap, protocol)
    pin.set_pin("4321")
    ctap = Ctap2(dev)  # fresh getInfo
    assert ctap.info.options.get("clientPin") is True
    pin = ClientPin(ctap, protocol)
    retries, _ = pin.get_pin_retries()
    assert retries == 8, retries
    step("setPIN, 8 retries")
    try:
        pin.get_pin_token("0000", ClientPin.PERMISSION.GET_ASSERTION, RP)
        raise AssertionError("a wrong PIN gave a token")
    except CtapError as e:
        assert e.code == CtapError.ERR.PIN_INVALID, e
    assert pin.get_pin_retries()[0] == 7
    step("wrong PIN: PIN_INVALID, 7 retries left")
    perms = ClientPin.PERMISSION.MAKE_CREDENTIAL | ClientPin.PERMISSION.GET_ASSERTION
    token = pin.get_pin_token("4321", perms, RP)
    assert pin.get_pin_retries()[0] == 8
    step(f"token of {len(token)} bytes; retries back to 8")

    cdh = hashlib.sha256(os.urandom(32)).digest()
    mc = ctap.make_credential(
        cdh,
        {"id": RP, "name": "auths"},
        {"id": b"user", "name": "user"},
        [{"type": "public-key", "alg": -7}],
        pin_uv_param=protocol.authenticate(token, cdh),
        pin_uv_protocol=protocol.VERSION,
    )
    ad = mc.auth_data
    assert ad.is_user_present() and ad.is_user_verified(), ad.flags
    cred = ad.credential_data
    step("makeCredential with pinUvAuthParam: UP and UV set")

    cdh = hashlib.sha256(os.urandom(32)).digest()
    ga = ctap.get_assertion(
        RP,
        cdh,
        [{"type": "public-key", "id": cred.credential_id}],
        pin_uv_param=protocol.authenticate(token, cdh),
        pin_uv_protocol=protocol.VERSION,
    )
    assert ga.auth_data.is_user_verified(), ga.auth_data.flags
    CoseKey.for_alg(cred.public_key[3])(cred.public_key).verify(ga.auth_data + cdh, ga.signature)
    step("getAssertion with pinUvAuthParam: UV set, signature verified by python-fido2")

    bad = bytearray(protocol.authenticate(token, cdh))
    bad[0] ^= 1
    try:
        ctap.get_assertion(
            RP,
            cdh,
            [{"type": "public-key", "id": cred.credential_id}],
            pin_uv_param=bytes(bad),
            pin_uv_protocol=protocol.VERSION,
        )
        raise AssertionError("a forged pinUvAuthParam was accepted")
    except CtapError as e:
        assert e.code == CtapError.ERR.PIN_AUTH_INVALID, e
    step("a flipped pinUvAuthParam bit: PIN_AUTH_INVALID")


if __name__ == "__main__":
    try:
        main()
    except Exception as e:  # report, then fail
        print(f"FAILED: {type(e).__name__}: {e}", file=sys.stderr)
        sys.exit(1)

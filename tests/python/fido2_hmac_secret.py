#!/usr/bin/env python3
"""An independent check of the virtual key's hmac-secret extension (CTAP 2.1 §12.5):
python-fido2's CTAPHID stack, Ctap2 and its clientPIN key agreement, against
`auths sim serve --pin-protocol N` over the sim's report socket.

usage: fido2_hmac_secret.py SOCKET PROTOCOL SALT_HEX   (PROTOCOL: 1 or 2; SALT: 32 bytes)

Makes a credential with {"hmac-secret": true}, then gets assertions carrying the salt
encrypted as the spec says, and decrypts the outputs with python-fido2's own PIN protocol code:
the same salt gives the same output, two salts give both, a flipped saltAuth bit is refused.
Prints one "ok:" line per step, then "credential: HEX" and "output: HEX" so the caller can
compare its own client's output for the same credential and salt; exits non-zero at the first
failure.
"""
import hashlib
import os
import sys

from fido2.cose import CoseKey
from fido2.ctap import CtapError
from fido2.ctap2 import Ctap2
from fido2.ctap2.pin import ClientPin, PinProtocolV1, PinProtocolV2
from fido2.hid import CtapHidDevice
from fido2.hid.base import HidDescriptor

sys.path.insert(0, os.path.dirname(__file__))
from fido2_client_pin import REPORT, RP, SimConnection, step  # noqa: E402


def assertion(ctap, pin, protocol, cred, salts, flip=False):
    key_agreement, shared = pin._get_shared_secret()
    salt_enc = protocol.encrypt(shared, b"".join(salts))
    salt_auth = bytearray(protocol.authenticate(shared, salt_enc))
    if flip:
        salt_auth[0] ^= 1
    ext = {1: key_agreement, 2: salt_enc, 3: bytes(salt_auth)}
    if protocol.VERSION != 1:
        ext[4] = protocol.VERSION
    cdh = hashlib.sha256(os.urandom(32)).digest()
    ga = ctap.get_assertion(
        RP,
        cdh,
        [{"type": "public-key", "id": cred.credential_id}],
        extensions={"hmac-secret": ext},
    )
    CoseKey.for_alg(cred.public_key[3])(cred.public_key).verify(ga.auth_data + cdh, ga.signature)
    out = protocol.decrypt(shared, ga.auth_data.extensions["hmac-secret"])
    assert len(out) == 32 * len(salts), len(out)
    return out


def main():
    path, version, salt = sys.argv[1], int(sys.argv[2]), bytes.fromhex(sys.argv[3])
    assert len(salt) == 32
    desc = HidDescriptor(path, 0, 0, REPORT, REPORT, "auths sim", None)
    dev = CtapHidDevice(desc, SimConnection(path))
    ctap = Ctap2(dev)
    assert "hmac-secret" in ctap.info.extensions, ctap.info.extensions
    step(f"getInfo lists hmac-secret: {ctap.info.extensions}")
    protocol = PinProtocolV1() if version == 1 else PinProtocolV2()
    pin = ClientPin(ctap, protocol)

    cdh = hashlib.sha256(os.urandom(32)).digest()
    mc = ctap.make_credential(
        cdh,
        {"id": RP, "name": "auths"},
        {"id": b"user", "name": "user"},
        [{"type": "public-key", "alg": -7}],
        extensions={"hmac-secret": True},
    )
    ad = mc.auth_data
    assert ad.extensions == {"hmac-secret": True}, ad.extensions
    cred = ad.credential_data
    step("makeCredential with hmac-secret: the extension output is true")

    first = assertion(ctap, pin, protocol, cred, [salt])
    again = assertion(ctap, pin, protocol, cred, [salt])
    assert first == again
    step("the same salt gives the same output, under a fresh shared secret each time")
    other = bytes(b ^ 0xFF for b in salt)
    both = assertion(ctap, pin, protocol, cred, [salt, other])
    assert both[:32] == first and both[32:] != first
    step("two salts: the first output again, and another")
    try:
        assertion(ctap, pin, protocol, cred, [salt], flip=True)
        raise AssertionError("a forged saltAuth was accepted")
    except CtapError as e:
        assert e.code == CtapError.ERR.PIN_AUTH_INVALID, e
    step("a flipped saltAuth bit: PIN_AUTH_INVALID")
    print("credential:", cred.credential_id.hex())
    print("output:", first.hex())


if __name__ == "__main__":
    try:
        main()
    except Exception as e:  # report, then fail
        print(f"FAILED: {type(e).__name__}: {e}", file=sys.stderr)
        sys.exit(1)

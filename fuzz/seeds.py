#!/usr/bin/env python3
"""Turn the test vectors (tests/vectors) into seed corpora for the fuzz targets.

Usage: fuzz/seeds.py VECTORS_DIR [OUT_DIR]   (OUT_DIR defaults to fuzz/seeds)

VECTORS_DIR holds the `*.txt` record files (records separated by a blank line, `key = value`
lines, `#` comments, hex byte strings; see its README). Each target gets a directory of small
files: the vector bytes framed the way that target reads its input (see each target's `//!`),
plus a few hand-made inputs for the text parsers. Re-running it rewrites the same files.
"""
import hashlib
import os
import struct
import sys


def records(path):
    rec = {}
    for line in open(path, encoding="utf-8"):
        line = line.rstrip("\n")
        if line.startswith("#"):
            continue
        if not line.strip():
            if rec:
                yield rec
            rec = {}
            continue
        if " = " in line:
            k, v = line.split(" = ", 1)
            rec[k.strip()] = v
    if rec:
        yield rec


def unhex(s):
    try:
        return bytes.fromhex(s.strip())
    except (ValueError, AttributeError):
        return None


# Canonical CBOR for the few shapes the seeds need (CTAP 2.1 §8 ordering: shorter keys first).
def cbor_head(major, n):
    if n < 24:
        return bytes([major << 5 | n])
    for ai, fmt in ((24, ">B"), (25, ">H"), (26, ">I"), (27, ">Q")):
        if n < 1 << (8 * struct.calcsize(fmt)):
            return bytes([major << 5 | ai]) + struct.pack(fmt, n)
    raise ValueError(n)


def cbor(v):
    if isinstance(v, bool):
        return bytes([0xF5 if v else 0xF4])
    if isinstance(v, int):
        return cbor_head(0, v) if v >= 0 else cbor_head(1, -1 - v)
    if isinstance(v, bytes):
        return cbor_head(2, len(v)) + v
    if isinstance(v, str):
        b = v.encode()
        return cbor_head(3, len(b)) + b
    if isinstance(v, list):
        return cbor_head(4, len(v)) + b"".join(cbor(x) for x in v)
    if isinstance(v, dict):
        items = sorted((cbor(k), cbor(x)) for k, x in v.items())
        items.sort(key=lambda kv: (len(kv[0]), kv[0]))
        return cbor_head(5, len(items)) + b"".join(k + x for k, x in items)
    raise TypeError(v)


def ssh_string(b):
    return struct.pack(">I", len(b)) + b


class Out:
    def __init__(self, root):
        self.root = root
        self.count = {}

    def put(self, target, name, data):
        if data is None or len(data) > 8192:
            return
        d = os.path.join(self.root, target)
        os.makedirs(d, exist_ok=True)
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)[:60]
        tag = hashlib.sha1(data).hexdigest()[:8]
        with open(os.path.join(d, f"{safe}-{tag}"), "wb") as f:
            f.write(data)
        self.count[target] = self.count.get(target, 0) + 1


COMMANDS = {"authenticatorGetInfo": 0, "authenticatorMakeCredential": 1, "authenticatorGetAssertion": 2}


def main():
    vectors = sys.argv[1]
    out = Out(sys.argv[2] if len(sys.argv) > 2 else os.path.join(os.path.dirname(__file__), "seeds"))
    cose_keys = []
    for fname in sorted(os.listdir(vectors)):
        if not fname.endswith(".txt"):
            continue
        for r in records(os.path.join(vectors, fname)):
            name = r.get("name", fname)
            packets = unhex(r.get("packets", ""))
            if packets:
                out.put("ctaphid_reassembly", name, packets)
                payload = unhex(r.get("expect.msg0.payload", ""))
                if "clientpin" in name and payload:
                    out.put("client_pin", name, payload)
                if r.get("direction") == "host_to_device":
                    # virtual_key: touch mode 0 (auto), then "report" ops (0) for each report.
                    steps = b"".join(b"\x00" + packets[i:i + 64] for i in range(0, len(packets), 64))
                    out.put("virtual_key", name, b"\x00" + steps)
            ao = unhex(r.get("attestation_object", ""))
            cdh = unhex(r.get("client_data_hash", ""))
            if ao and len(cdh) == 32:
                out.put("attestation_statement", name, cdh + ao)
            resp = unhex(r.get("response_cbor", ""))
            if resp:
                out.put("cbor", name, resp)
                status = unhex(r.get("status", "00")) or b"\x00"
                which = COMMANDS.get(r.get("command", ""), 0)
                out.put("ctap2_response", name, bytes([which]) + status[:1] + resp)
            for key in ("auth_data", "expect.auth_data"):
                ad = unhex(r.get(key, ""))
                if ad:
                    out.put("authenticator_data", name, ad)
            sig = unhex(r.get("signature", ""))
            if sig:
                out.put("authenticator_data", name + "-sig", sig)
            ck = unhex(r.get("cose_key", "")) or unhex(r.get("expect.cose_key", ""))
            if ck:
                out.put("authenticator_data", name + "-cose", ck)
                out.put("cbor", name + "-cose", ck)
                cose_keys.append(ck)
            if r.get("kind") == "assertion" and ck and r.get("auth_data"):
                cdh = unhex(r.get("client_data_hash", ""))
                sig = unhex(r.get("signature", ""))
                ad = unhex(r["auth_data"])
                cred = unhex(r.get("cred_id", "")) or b"credential"
                if cdh and len(cdh) == 32 and sig and len(ck) < 65536 and len(cred) < 256:
                    rp = r.get("rp_id", "").encode()[:255]
                    body = cbor({1: {"id": cred, "type": "public-key"}, 2: ad, 3: sig})
                    seed = (b"\x00" + struct.pack(">I", 0) + bytes([len(rp)]) + rp + cdh
                            + struct.pack(">H", len(ck)) + ck + bytes([len(cred)]) + cred + body)
                    out.put("verify_assertion", name, seed)
                    out.put("ctap2_response", name + "-ga", b"\x02\x00" + body)
            cdj = r.get("client_data_json")
            if cdj:
                raw = unhex(cdj)
                out.put("client_data", name, raw if raw else cdj.encode())

    # Text parsers: hand-made inputs in the shapes the code reads.
    peer = ('{"uid":1000,"pid":4242,"start_time":123456,"exe":"/usr/bin/ssh-keygen",'
            '"parent_pid":4200,"parent_start_time":123400,"parent_exe":"/usr/bin/git","session_id":4000}')
    cd = ('{"type":"auths.presence.v1","nonce":"' + "ab" * 32 + '","key":"SHA256:abc","digest":"'
          + "cd" * 32 + '","namespace":"git","peer":' + peer
          + ',"grant":{"max_signatures":20,"ttl_secs":60,"scope":"parent"},"created":1700000000}')
    out.put("client_data", "ours", cd.encode())
    ck = cose_keys[0] if cose_keys else b""
    tokens = ('{"version":1,"tokens":[{"id":"0123456789abcdef","label":"main","credential_id":"'
              + "11" * 16 + '","public_key_cose":"' + ck.hex() + '","algorithm":-7,"rp_id":"auths:presence",'
              '"aaguid":"' + "00" * 16 + '","virtual_key":false,"device":"usb","created":1700000000,"sign_count":3}]}')
    out.put("tokens_json", "one", tokens.encode())
    out.put("tokens_json", "newer", b'{"version":9,"tokens":[]}')
    out.put("tokens_json", "u2f", tokens.replace('"sign_count":3}', '"sign_count":3,"protocol":"u2f",'
                                                 '"attestation_certificate":"3000"}').encode())
    approved = ('{"id":"r1","time":1700000000,"outcome":"approved","key":"SHA256:abc","digest":"' + "cd" * 32
                + '","namespace":"git","peer":' + peer + ',"client_data":' + repr_json(cd)
                + ',"auth_data":"' + "00" * 37 + '","signature":"3045","credential_id":"' + "11" * 16 + '"}')
    granted = ('{"id":"r2","time":1700000001,"outcome":"granted","key":"SHA256:abc","digest":"' + "cd" * 32
               + '","peer":' + peer + ',"grant_of":"r1"}')
    denied = ('{"id":"r3","time":1700000002,"outcome":"denied","key":"SHA256:abc","digest":"' + "cd" * 32
              + '","peer":' + peer + ',"reason":"no touch"}')
    log = "\n".join([approved, granted, denied, "not json"]) + "\n"
    out.put("audit_log", "chain", tokens.encode() + b"\x00" + log.encode())
    out.put("audit_log", "no-tokens", log.encode())
    for p in ["per-signature", "batch:20:60s:parent", "batch:5:1h30m", "per-peer:15m:session",
              "per-peer:2d:user", "batch:1:90", "90s", "4h", "1h30m"]:
        out.put("policy", p, p.encode())
    stat = ("4242 (ssh-keygen) S 4200 4242 4000 34816 4242 4194304 100 0 0 0 0 0 0 0 20 0 1 0 "
            "123456 10000000 200 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0")
    out.put("proc_stat", "plain", stat.encode())
    out.put("proc_stat", "paren-name", stat.replace("(ssh-keygen)", "(a) b) (c)").encode())
    out.put("proc_stat", "pidpath", struct.pack("<iQQ", 13, 1700000000, 250) + b"/usr/bin/git\x00\x00")
    for w in ["/home/a/.auths/agent.sock", "/tmp/a b", "it's", "", "100%", "$HOME", "a\nb", "<&>\"",
              "a@b.c", "--policy\x00batch:20:60s:parent"]:
        out.put("quoting", w or "empty", w.encode())
    # ssh-agent messages (draft-miller-ssh-agent §3): request identities, a sign request of an
    # SSHSIG blob with an Ed25519 key, an add-identity header.
    ed_blob = ssh_string(b"ssh-ed25519") + ssh_string(bytes(range(32)))
    sshsig = b"SSHSIG" + ssh_string(b"git") + ssh_string(b"") + ssh_string(b"sha512") + ssh_string(bytes(64))
    out.put("agent_message", "request-identities", b"\x0b")
    out.put("agent_message", "sign-sshsig", b"\x0d" + ssh_string(ed_blob) + ssh_string(sshsig) + struct.pack(">I", 0))
    out.put("agent_message", "sshsig", sshsig)
    out.put("agent_message", "lock", b"\x16" + ssh_string(b"passphrase"))
    out.put("agent_message", "extension", b"\x1b" + ssh_string(b"session-bind@openssh.com") + ssh_string(ed_blob))
    # An ECDSA P-256 add whose private scalar starts with a zero byte, as ssh-add writes it: the
    # mpint drops that byte (31 bytes); plain and with a lifetime constraint. Q = d·G, computed
    # once (the script needs no EC library).
    short_d = bytes(range(1, 32))
    short_q = bytes.fromhex(
        "047a593180860c4037c83c12749845c8ee1424dd297fadcb895e358255d2c7d2b2a8ca25580f2626fe579062ff1b99ff91c2"
        "4a0da06fb32b5be20148c9249f5650")
    ecdsa_key = ssh_string(b"ecdsa-sha2-nistp256") + ssh_string(b"nistp256") + ssh_string(short_q)
    out.put("agent_message", "add-ecdsa-short-scalar", b"\x11" + ecdsa_key + ssh_string(short_d) + ssh_string(b"short"))
    out.put("agent_message", "add-constrained-ecdsa-short-scalar",
            b"\x19" + ecdsa_key + ssh_string(short_d) + ssh_string(b"short") + b"\x01" + struct.pack(">I", 60))
    # ssh_login: a session bind of the Ed25519 host key with seed [2; 32] over the session id
    # [5; 32] (the signature is that key's, made with ssh-key), then login data for that
    # session (RFC 4252 §7; OpenSSH's hostbound method names the host key).
    host_blob = bytes.fromhex(
        "0000000b7373682d65643235353139000000208139770ea87d175f56a35466c34c7ecccb8d8a91b4ee37a25df60f5b8fc9b394")
    host_sig = bytes.fromhex(
        "0000000b7373682d656432353531390000004093ff77da0b820330b17b3f2c056f8f1e33bb3ed074c9b51c4086e651770d79184d"
        "ffa590ab39819cb04e0f1eb75c69ee8970f0f935e8d0b5ce5798bc66804a04")
    sid = bytes([5] * 32)

    def login(method, tail):
        return (ssh_string(sid) + b"\x32" + ssh_string(b"git") + ssh_string(b"ssh-connection")
                + ssh_string(method) + b"\x01" + ssh_string(b"ssh-ed25519") + ssh_string(ed_blob) + tail)

    for fwd in (0, 1):
        bind = ssh_string(host_blob) + ssh_string(sid) + ssh_string(host_sig) + bytes([fwd])
        for name, data in (("publickey", login(b"publickey", b"")),
                           ("hostbound", login(b"publickey-hostbound-v00@openssh.com", ssh_string(host_blob)))):
            out.put("ssh_login", "bind%d-%s" % (fwd, name), struct.pack(">H", len(bind)) + bind + data)
    out.put("ssh_login", "unbound-login", b"\x00\x00" + login(b"publickey", b""))
    # virtual_key: INIT on the broadcast channel, then CTAPHID_CBOR requests on the channel
    # it allocated (op bit 2), then timer polls with time passing (op 1, 20 ms units << 3).
    def frames(cid, cmd, payload):
        reps = [cid + bytes([0x80 | cmd]) + struct.pack(">H", len(payload)) + payload[:57]]
        rest, seq = payload[57:], 0
        while rest:
            reps.append(cid + bytes([seq]) + rest[:59])
            rest, seq = rest[59:], seq + 1
        return [r.ljust(64, b"\0") for r in reps]

    def vk(mode, requests, cmd=0x10):
        steps = b"\x00" + frames(b"\xff\xff\xff\xff", 0x06, bytes(range(8)))[0]
        for req in requests:
            steps += b"".join(b"\x04" + r for r in frames(b"\0\0\0\0", cmd, req))
            steps += b"\x01" + bytes([5 << 3 | 1]) + bytes([31 << 3 | 1])
        return bytes([mode]) + steps

    cdh = bytes(32)
    make = b"\x01" + cbor({1: cdh, 2: {"id": "auths:presence"}, 3: {"id": b"u", "name": "u"},
                           4: [{"alg": -7, "type": "public-key"}, {"alg": -8, "type": "public-key"}]})
    get = b"\x02" + cbor({1: "auths:presence", 2: cdh})
    out.put("virtual_key", "getinfo", vk(0, [b"\x04"]))
    out.put("virtual_key", "make-get-auto", vk(0, [make, get]))
    out.put("virtual_key", "make-never", vk(2, [make]))
    out.put("virtual_key", "make-manual-touch", vk(3, [make]) + b"\x02")
    out.put("virtual_key", "selection-cancel", vk(0, [b"\x0b"]) + b"\x04" + frames(b"\0\0\0\0", 0x11, b"")[0])
    # U2F (CTAP1): request APDUs in extended length encoding, as libfido2 sends them.
    def apdu(ins, p1, data):
        return bytes([0, ins, p1, 0, 0]) + struct.pack(">H", len(data)) + data + b"\0\0"

    app = hashlib.sha256(b"auths:presence").digest()
    reg = apdu(0x01, 0, bytes(32) + app)
    auth = apdu(0x02, 0x07, bytes(32) + app + bytes([62]) + bytes(62))
    # virtual_key with bit 7 of the mode byte: a U2F-only key, APDUs in CTAPHID_MSG (0x03).
    out.put("virtual_key", "u2f-version-register-auto", vk(0x80, [apdu(0x03, 0, b""), reg], 0x03))
    out.put("virtual_key", "u2f-register-manual-touch", vk(0x83, [reg, reg], 0x03) + b"\x02")
    out.put("virtual_key", "u2f-check-only-foreign", vk(0x80, [auth, b"\x00\x03"], 0x03))
    out.put("virtual_key", "u2f-cbor-refused", vk(0x80, [b"\x04"]))
    # u2f_response: one seed per response shape a U2F key sends (Raw Message Formats §4.3,
    # §5.4, §6.2, §3.3): the first byte picks the parser. The registration carries the virtual
    # key's fixed attestation certificate, the P-256 generator as its point and a well-formed
    # DER signature.
    ok = b"\x90\x00"
    point = bytes.fromhex("046b17d1f2e12c4247f8bce6e563a440f277037d812deb33a0f4a13945d898c296"
                          "4fe342e2fe1a7f9b8ee7eb4a7c0f9e162bce33576b315ececbb6406837bf51f5")
    der_sig = bytes.fromhex("3044" + "0220" + "11" * 32 + "0220" + "22" * 32)
    cert_path = os.path.join(os.path.dirname(__file__), "..", "src", "ctap", "virtual_key",
                             "u2f_attestation.der")
    cert = open(cert_path, "rb").read()
    out.put("u2f_response", "register", b"\x01\x05" + point + bytes([64]) + bytes(range(64)) + cert
            + der_sig + ok)
    out.put("u2f_response", "authenticate", b"\x02\x01" + struct.pack(">I", 7) + der_sig + ok)
    out.put("u2f_response", "version", b"\x03" + b"U2F_V2" + ok)
    for sw, name in ((0x6985, "conditions-not-satisfied"), (0x6A80, "wrong-data"),
                     (0x6700, "wrong-length"), (0x6D00, "ins-not-supported"),
                     (0x6E00, "cla-not-supported")):
        out.put("u2f_response", name, b"\x00" + struct.pack(">H", sw))
    # refusal@auths-presence answers: none, one, one with an escape in its reason.
    out.put("refusal_answer", "none", struct.pack(">I", 0))
    out.put("refusal_answer", "one", struct.pack(">III", 1, 4242, 3) + ssh_string(b"no touch within 30 s"))
    out.put("refusal_answer", "escape", struct.pack(">III", 1, 7, 0) + ssh_string(b"evil\x1b[2J"))
    # HID report descriptors: a FIDO interface (usage page 0xF1D0, usage 1), a keyboard, a long
    # item before the FIDO one, an extended usage.
    fido_desc = bytes([0x06, 0xD0, 0xF1, 0x09, 0x01, 0xA1, 0x01, 0x09, 0x20, 0x15, 0x00, 0x26, 0xFF,
                       0x00, 0x75, 0x08, 0x95, 0x40, 0x81, 0x02, 0x09, 0x21, 0x15, 0x00, 0x26, 0xFF,
                       0x00, 0x75, 0x08, 0x95, 0x40, 0x91, 0x02, 0xC0])
    out.put("hid_descriptor", "fido", fido_desc)
    out.put("hid_descriptor", "keyboard", bytes([0x05, 0x01, 0x09, 0x06, 0xA1, 0x01, 0xC0]))
    out.put("hid_descriptor", "long-item", bytes([0xFE, 0x02, 0x00, 0xAA, 0xBB]) + fido_desc)
    out.put("hid_descriptor", "extended-usage", bytes([0x0B, 0x01, 0x00, 0xD0, 0xF1]))
    keys = os.path.join(os.path.dirname(__file__), "seed-keys")
    if os.path.isdir(keys):
        for k in sorted(os.listdir(keys)):
            out.put("openssh_key", k, open(os.path.join(keys, k), "rb").read())
    for t, n in sorted(out.count.items()):
        print(f"{t}: {n} seeds")


def repr_json(s):
    import json
    return json.dumps(s)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Independent LoRaWAN 1.0.x MIC and FRMPayload cipher vectors for tests/mic.rs and
tests/mic_downlink.rs.

Frames are laid out here with struct.pack and signed with the `cryptography` package's
AES-CMAC (OpenSSL), sharing no code with the crate. Run with
`pip install cryptography && python3 tests/vectors/mic_vectors.py`; the printed constants
are pasted into tests/mic_vectors.rs. The script first checks its own CMAC and framing
against published vectors (RFC 4493, and the lora-packet library's MIC tests), so a
mistake here cannot silently produce self-consistent but wrong constants.
"""
import struct
from cryptography.hazmat.primitives.cmac import CMAC
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes


def cmac(key: bytes, msg: bytes) -> bytes:
    c = CMAC(algorithms.AES(key))
    c.update(msg)
    return c.finalize()


def join_request(app_key, join_eui, dev_eui, dev_nonce):
    body = b"\x00" + struct.pack("<QQH", join_eui, dev_eui, dev_nonce)
    return body + cmac(app_key, body)[:4]


def data_up(nwk_s_key, confirmed, dev_addr, fcnt, fctrl=0, fopts=b"", fport=None, frm=b""):
    mhdr = 0x80 if confirmed else 0x40
    assert fctrl & 0x0F == 0 and len(fopts) <= 15
    msg = bytes([mhdr]) + struct.pack("<IBH", dev_addr, fctrl | len(fopts), fcnt & 0xFFFF) + fopts
    if fport is not None:
        msg += bytes([fport]) + frm
    b0 = b"\x49" + b"\x00" * 4 + b"\x00" + struct.pack("<II", dev_addr, fcnt) + b"\x00" + bytes([len(msg)])
    return msg + cmac(nwk_s_key, b0 + msg)[:4]


def frm_cipher(key, dev_addr, fcnt, downlink, data):
    """LoRaWAN 1.0.x 4.3.3: XOR with aes128_encrypt(key, A_i), i from 1."""
    ecb = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
    out = b""
    for i in range(0, len(data), 16):
        a = b"\x01" + b"\x00" * 4 + bytes([1 if downlink else 0]) \
            + struct.pack("<II", dev_addr, fcnt) + b"\x00" + bytes([i // 16 + 1])
        s = ecb.update(a)
        out += bytes(x ^ y for x, y in zip(data[i:i + 16], s))
    return out


def data_down(nwk_s_key, app_s_key, confirmed, dev_addr, fcnt, adr=False, ack=False,
              f_pending=False, fopts=b"", fport=None, frm=b""):
    mhdr = 0xA0 if confirmed else 0x60
    fctrl = (0x80 if adr else 0) | (0x20 if ack else 0) | (0x10 if f_pending else 0)
    assert len(fopts) <= 15
    msg = bytes([mhdr]) + struct.pack("<IBH", dev_addr, fctrl | len(fopts), fcnt & 0xFFFF) + fopts
    if fport is not None:
        key = nwk_s_key if fport == 0 else app_s_key
        msg += bytes([fport]) + frm_cipher(key, dev_addr, fcnt, True, frm)
    b0 = b"\x49" + b"\x00" * 4 + b"\x01" + struct.pack("<II", dev_addr, fcnt) + b"\x00" + bytes([len(msg)])
    return msg + cmac(nwk_s_key, b0 + msg)[:4]


def data_up_encrypted(nwk_s_key, app_s_key, confirmed, dev_addr, fcnt, fport, frm):
    key = nwk_s_key if fport == 0 else app_s_key
    return data_up(nwk_s_key, confirmed, dev_addr, fcnt, fport=fport,
                   frm=frm_cipher(key, dev_addr, fcnt, False, frm))


# RFC 4493, section 4: AES-CMAC examples 1 to 4.
K = bytes.fromhex("2b7e151628aed2a6abf7158809cf4f3c")
M = bytes.fromhex(
    "6bc1bee22e409f96e93d7e117393172aae2d8a571e03ac9c9eb76fac45af8e51"
    "30c81c46a35ce411e5fbc1191a0a52eff69f2445df4f9b17ad2b417be66c3710")
assert cmac(K, M[:0]).hex() == "bb1d6929e95937287fa37d129b756746"
assert cmac(K, M[:16]).hex() == "070a16b46b4d4144f79bdd9dd04a287c"
assert cmac(K, M[:40]).hex() == "dfa66747de9ae63030ca32611497c827"
assert cmac(K, M[:64]).hex() == "51f0bebf7e3b9d92fc49741779363cfe"

# lora-packet (github.com/anthonykirby/lora-packet) test/mic tests.
NWK = bytes.fromhex("44024241ed4ce9a68c6a8bc055233fd3")
assert data_up(NWK, False, 0x49BE7DF1, 2, fport=1, frm=bytes.fromhex("95437876")).hex() \
    == "40f17dbe4900020001954378762b11ff0d"
assert data_up(NWK, False, 0x49BE7DF1, 3, fport=1).hex() == "40f17dbe49000300012a3518af"
APP = bytes.fromhex("98929b92c49edba9676d646d3b612456")
jr = bytes.fromhex("0039363463336913AA05693574323831330489C65B1304")
assert join_request(APP, *struct.unpack("<QQH", jr[1:19])) == jr

# lora-packet README / test/decrypt: FRMPayload 95437876 of the frame above is "test".
assert frm_cipher(bytes.fromhex("ec925802ae430ca77fd3dd73cb2cc588"), 0x49BE7DF1, 2, False,
                  bytes.fromhex("95437876")) == b"test"

# Our vectors.
APP_KEY = bytes.fromhex("2b7e151628aed2a6abf7158809cf4f3c")
NWK_S_KEY = bytes.fromhex("000102030405060708090a0b0c0d0e0f")
vectors = {
    "JOIN_REQUEST": join_request(APP_KEY, 0x70B3D57ED0000001, 0x0004A30B001C0530, 0x1234),
    "UNCONFIRMED_FCNT_1": data_up(NWK_S_KEY, False, 0x26011BDA, 1, fport=1, frm=b"hello"),
    "CONFIRMED_FCNT_0X1_0005": data_up(NWK_S_KEY, True, 0x26011BDA, 0x0001_0005, fport=2, frm=b"\x01\x02\x03"),
    "UNCONFIRMED_FCNT_MAX": data_up(NWK_S_KEY, False, 0x26011BDA, 0xFFFF_FFFF, fport=10, frm=b""),
    "UNCONFIRMED_NO_PORT": data_up(NWK_S_KEY, False, 0x26011BDA, 7),
    # ADR + ACK bits, FOptsLen 2 (a LinkCheckReq and a DevStatus-ish byte): the MIC covers FOpts.
    "FOPTS_FCNT_0X2_ABCD": data_up(NWK_S_KEY, False, 0x01020304, 0x0002_ABCD, fctrl=0xA0, fopts=b"\x02\x03", fport=3, frm=b"\xAA" * 20),
}
APP_S_KEY = bytes.fromhex("f0e1d2c3b4a5968778695a4b3c2d1e0f")
vectors.update({
    # DataDownlink: the ACK to a confirmed uplink, with an application payload.
    "DOWN_ACK_FCNT_1": data_down(NWK_S_KEY, APP_S_KEY, False, 0x26011BDA, 1, ack=True,
                                 fport=10, frm=b"hello"),
    # Confirmed, ADR, FPending, FOpts (LinkADRReq-sized), 20 bytes over two cipher blocks,
    # a counter past 65535.
    "DOWN_CONFIRMED_FOPTS_FCNT_0X1_0002": data_down(
        NWK_S_KEY, APP_S_KEY, True, 0x01020304, 0x0001_0002, adr=True, f_pending=True,
        fopts=bytes.fromhex("0351ff0001"), fport=1, frm=bytes(range(20))),
    # FPort 0: MAC commands encrypted under the NwkSKey.
    "DOWN_PORT0_FCNT_70000": data_down(NWK_S_KEY, APP_S_KEY, False, 0x26011BDA, 70_000,
                                       fport=0, frm=bytes.fromhex("0602")),
    # No FPort: an empty ACK, at the top of the counter space.
    "DOWN_EMPTY_ACK_FCNT_MAX": data_down(NWK_S_KEY, APP_S_KEY, False, 0x26011BDA,
                                         0xFFFF_FFFF, ack=True),
    # DataUplink with an AppSKey: 33 bytes, three cipher blocks, counter 0x2_0001.
    "UP_ENCRYPTED_FCNT_0X2_0001": data_up_encrypted(NWK_S_KEY, APP_S_KEY, False, 0x26011BDA,
                                                    0x0002_0001, 5, bytes(range(33))),
})
for name, frame in vectors.items():
    print(f'const {name}: &str = "{frame.hex()}";')

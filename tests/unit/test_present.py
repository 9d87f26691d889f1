"""What `nfpipe map dump` shows of network-order fields: addresses and ports as people
write them, decided by the BTF type (``__be32``/``__be16``) and the field's name."""
from __future__ import annotations

import socket
import struct

import pytest

from nfpipe.btf import Codec
from nfpipe.btf.present import from_display, to_display
from nfpipe.compose.nodes import build_nf
from nfpipe.loader import ObjectSpec
from nfpipe.resources import nf_source


def codecs(nf: str, map_name: str) -> tuple[Codec, Codec]:
    spec = ObjectSpec.from_file(build_nf(nf_source(f"{nf}.c"), hook="xdp", instance="n"))
    m = spec.maps[f"n__{map_name}"]
    return Codec.for_type(spec.btf, m.key_type_id), Codec.for_type(spec.btf, m.value_type_id)


def test_nat_connection_entries():
    key_c, val_c = codecs("nat", "conns")
    raw_key = socket.inet_aton("10.0.0.5") + socket.inet_aton("198.51.100.7") + \
        struct.pack("!HHB3x", 40000, 443, 6)
    raw_val = socket.inet_aton("203.0.113.1") + struct.pack("!H", 20001) + bytes([1, 1])
    key = to_display(key_c, key_c.decode(raw_key))
    val = to_display(val_c, val_c.decode(raw_val))
    assert key == {"saddr": "10.0.0.5", "daddr": "198.51.100.7", "sport": 40000,
                   "dport": 443, "proto": 6, "pad": bytes(3)}
    assert val["addr"] == "203.0.113.1" and val["port"] == 20001
    # and back: what dump prints, set takes
    assert key_c.encode(from_display(key_c, key)) == raw_key
    assert val_c.encode(from_display(val_c, val)) == raw_val


@pytest.mark.parametrize("family, src", [(4, "192.0.2.10"), (6, "2001:db8::10")])
def test_telemetry_flow_keys_of_both_families(family, src):
    key_c, _ = codecs("telemetry", "flows")
    fam = socket.AF_INET if family == 4 else socket.AF_INET6
    packed = socket.inet_pton(fam, src).ljust(16, b"\0")
    dst = socket.inet_pton(fam, "2001:db8::20" if family == 6 else "198.51.100.20").ljust(16,
                                                                                         b"\0")
    raw = packed + dst + struct.pack("!HH", 5353, 53) + bytes([17, family]) + \
        bytes(key_c.size - 38)
    shown = to_display(key_c, key_c.decode(raw))
    assert shown["saddr"] == src and shown["sport"] == 5353 and shown["dport"] == 53
    assert key_c.encode(from_display(key_c, shown)) == raw


def test_plain_integers_stay_integers():
    key_c, val_c = codecs("filter", "hits")
    assert to_display(key_c, 7) == 7 and to_display(val_c, [1, 2]) == [1, 2]

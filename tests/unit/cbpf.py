"""A classic BPF interpreter written from the kernel's rules, the oracle the frame tests run
l2lb_agent.frames.bpf_program through (independent of the code that emits the program).

Covers what a socket filter may use that matters here: LD/LDX (IMM, ABS, IND, LEN, MEM, MSH),
ancillary loads (SKF_AD_PKTTYPE, SKF_AD_VLAN_TAG_PRESENT), ALU, JMP (JA, JEQ, JGT, JGE, JSET with K
or X), RET (K or A), TAX/TXA, ST/STX. A load past the end of the packet ends the program with 0,
as in the kernel. `check` applies the kernel's static checks (length, jump targets, final RET).
"""

from __future__ import annotations

from collections.abc import Sequence

Insn = tuple[int, int, int, int]
SKF_AD_OFF = -0x1000
AD_PKTTYPE, AD_VLAN_TAG_PRESENT = 4, 48
MAXINSNS = 4096


def check(prog: Sequence[Insn]) -> None:
    """Raise ValueError where the kernel's sk_chk_filter / bpf_check_classic would refuse."""
    if not 0 < len(prog) <= MAXINSNS:
        raise ValueError(f"{len(prog)} instructions")
    for pc, (code, jt, jf, k) in enumerate(prog):
        if not (0 <= jt <= 255 and 0 <= jf <= 255 and 0 <= k < 2**32):
            raise ValueError(f"insn {pc}: field out of range")
        if code & 0x07 == 0x05:
            targets = [pc + 1 + k] if code & 0xF0 == 0x00 else [pc + 1 + jt, pc + 1 + jf]
            if any(t >= len(prog) for t in targets):
                raise ValueError(f"insn {pc}: jump out of the program")
    if prog[-1][0] & 0x07 != 0x06:
        raise ValueError("the last instruction is not a return")


def _signed(k: int) -> int:
    return k - 2**32 if k >= 2**31 else k


def _load(frame: bytes, offset: int, size: int, pkttype: int, tagged: bool) -> int | None:
    if offset < 0:
        ad = offset - SKF_AD_OFF
        if ad == AD_PKTTYPE:
            return pkttype
        if ad == AD_VLAN_TAG_PRESENT:
            return int(tagged)
        raise ValueError(f"ancillary load {ad} not modelled")
    if offset + size > len(frame):
        return None
    return int.from_bytes(frame[offset:offset + size], "big")


_ALU = {0x00: lambda a, b: a + b, 0x10: lambda a, b: a - b, 0x20: lambda a, b: a * b,
        0x40: lambda a, b: a | b, 0x50: lambda a, b: a & b, 0x60: lambda a, b: a << (b & 31),
        0x70: lambda a, b: a >> (b & 31), 0xA0: lambda a, b: a ^ b}


def run(prog: Sequence[Insn], frame: bytes, pkttype: int = 0, tagged: bool = False) -> int:
    """Bytes of the frame the filter accepts (0 = dropped)."""
    a = x = pc = 0
    mem = [0] * 16
    while True:
        code, jt, jf, k = prog[pc]
        pc += 1
        cls = code & 0x07
        if cls in (0x00, 0x01):  # LD, LDX
            size = {0x00: 4, 0x08: 2, 0x10: 1}[code & 0x18]
            mode = code & 0xE0
            if mode == 0x00:
                value: int | None = k
            elif mode == 0x20:
                value = _load(frame, _signed(k), size, pkttype, tagged)
            elif mode == 0x40:
                value = _load(frame, x + _signed(k), size, pkttype, tagged)
            elif mode == 0x60:
                value = mem[k]
            elif mode == 0x80:
                value = len(frame)
            else:  # MSH: 4 * (P[k] & 0xf), LDX only
                byte = _load(frame, k, 1, pkttype, tagged)
                value = None if byte is None else 4 * (byte & 0x0F)
            if value is None:
                return 0
            if cls == 0x00:
                a = value
            else:
                x = value
        elif cls == 0x02:
            mem[k] = a
        elif cls == 0x03:
            mem[k] = x
        elif cls == 0x04:
            b = x if code & 0x08 else k
            if code & 0xF0 == 0x80:
                a = -a
            elif code & 0xF0 in (0x30, 0x90):  # DIV, MOD
                if b == 0:
                    return 0
                a = a // b if code & 0xF0 == 0x30 else a % b
            else:
                a = _ALU[code & 0xF0](a, b)
            a &= 0xFFFFFFFF
        elif cls == 0x05:
            b = x if code & 0x08 else k
            op = code & 0xF0
            if op == 0x00:
                pc += k
                continue
            taken = {0x10: a == b, 0x20: a > b, 0x30: a >= b, 0x40: bool(a & b)}[op]
            pc += jt if taken else jf
        elif cls == 0x06:
            return min(a if code & 0x18 == 0x10 else k, len(frame))
        else:  # MISC: TAX / TXA
            if code & 0xF8 == 0x00:
                x = a
            else:
                a = x

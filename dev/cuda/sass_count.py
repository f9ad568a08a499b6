#!/usr/bin/env python3
"""Lab: count SASS instruction forms in a cubin without cuobjdump (this machine has none).

Each kernel's .text section is read as 16-byte sm_90 instructions and a few forms are counted by
their encodings (learned from `cuobjdump -sass` on the device): the total, copies of a uniform
register into a vector register (IMAD.U32 Rd, RZ, RZ, URx: what ptxas emits when it keeps a
constant in a uniform register and needs it in a vector operand), immediate moves (IMAD.MOV.U32
Rd, RZ, RZ, imm) and byte permutes with an immediate (the E2M1 table lookups). Compare two builds
of a hot loop here before spending device time on them. The counts are static (each unrolled
variant once, nothing weighted by how often it runs): they show forms that vanish (copies, moves)
reliably, but a total can rise while the loop's own count falls (a ring-slot counter instead of a
division per stage added 96 instructions here), so totals are no measurement of speed:

  nvcc -DMXMOE_BUILDING_LIBRARY -DMXMOE_HAVE_CUDA -Iinclude -Isrc -O3 -DNDEBUG -arch=sm_90a \\
       -cubin --fmad=false -std=c++17 -x cu src/cuda/grouped_gemm_skinny.cu -o /tmp/k.cubin
  python3 dev/cuda/sass_count.py /tmp/k.cubin [--imm 0x4b400000] [--hist]
"""
import argparse
import collections
import struct


def text_sections(path):
    """(name, bytes) of every .text.* section of an ELF64 file."""
    data = open(path, "rb").read()
    shoff = struct.unpack_from("<Q", data, 0x28)[0]
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)
    headers = [struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize) for i in range(shnum)]
    names = headers[shstrndx][4]
    for h in headers:
        name = data[names + h[0]:data.index(b"\0", names + h[0])].decode()
        if name.startswith(".text."):
            yield name[len(".text."):], data[h[4]:h[4] + h[5]]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("cubin")
    ap.add_argument("--imm", type=lambda s: int(s, 0), help="also count moves of this immediate")
    ap.add_argument("--hist", action="store_true", help="the 25 commonest opcodes (low 16 bits)")
    args = ap.parse_args()
    for name, text in text_sections(args.cubin):
        words = [struct.unpack_from("<Q", text, i)[0] for i in range(0, len(text), 16)]
        opcode = [w & 0xFFFF for w in words]
        ra = [(w >> 24) & 0xFF for w in words]
        count = {
            "instructions": len(words),
            "uniform->vector copies": sum(o == 0x7E24 and a == 0xFF for o, a in zip(opcode, ra)),
            "immediate moves": sum(o == 0x7424 and a == 0xFF for o, a in zip(opcode, ra)),
            "PRMT with immediate": opcode.count(0x7416),
        }
        if args.imm is not None:
            count["moves of %#x" % args.imm] = sum(
                o == 0x7424 and a == 0xFF and w >> 32 == args.imm
                for o, a, w in zip(opcode, ra, words))
        print(name[-70:])
        for k, v in count.items():
            print("  %-26s %d" % (k, v))
        if args.hist:
            print("  commonest:", ", ".join("%#06x %d" % kv
                                            for kv in collections.Counter(opcode).most_common(25)))


if __name__ == "__main__":
    main()

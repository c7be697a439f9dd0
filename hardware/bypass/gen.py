#!/usr/bin/env python3
"""The bypass board's netlist (KiCad's s-expression netlist format) and its
schematic (SVG), from one description: the parts and the nets below.

    python3 hardware/bypass/gen.py          rewrites bypass.net and schematic.svg
    python3 hardware/bypass/gen.py --check  fails if they differ from the files

firmware/pitapd/tests/hardware_bypass.rs reads bypass.net back and checks, with
every relay released and then energized, what each jack pin reaches.
"""
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

# The four pairs of a T568A/B jack, by pin (1000BASE-T uses all four).
PAIRS = [(1, 2), (3, 6), (4, 5), (7, 8)]
# The header pin of the trigger line: BCM GPIO26 (pinmap.toml's
# bypass.line) is physical pin 37; it is pulled low at reset, so the board
# sees no edge while the Pi boots.
TRIG_PIN = 37

PARTS = {
    # ref: (value, footprint/part, description)
    "J1": ("RJ45", "Amphenol RJHSE-5380", "line side A (to the network's device A)"),
    "J2": ("RJ45", "Amphenol RJHSE-5380", "line side B (to the network's device B)"),
    "J3": ("RJ45", "Amphenol RJHSE-5380", "to the Pi's port A (eth0), 15 cm patch cable"),
    "J4": ("RJ45", "Amphenol RJHSE-5380", "to the Pi's port B (USB adapter), 15 cm patch cable"),
    "J5": ("Conn_02x20", "Samtec SSQ-120-03-G-D (stacking)", "Raspberry Pi 40-pin header"),
    "U1": ("74LVC1G123", "TI SN74LVC1G123DCTR", "retriggerable monostable: holds the relays while edges come"),
    "Q1": ("AO3400A", "Alpha & Omega AO3400A (SOT-23)", "logic-level N-MOSFET, low side of the coils"),
    "R1": ("10k", "0603 1 %", "trigger pull-down"),
    "R2": ("240k", "0603 1 %", "monostable Rext"),
    "C1": ("1uF", "0805 X7R 16 V", "monostable Cext: hold about K*R2*C1 = 240 ms"),
    "C2": ("100nF", "0603 X7R", "U1 decoupling"),
    "C3": ("10uF", "0805 X5R 10 V", "5 V bulk for the coils"),
    "R3": ("100", "0603", "gate resistor"),
    "R4": ("100k", "0603", "gate pull-down: off while U1 is unpowered"),
    "R5": ("1k", "0603", "INLINE LED resistor"),
    "D9": ("LED green", "Kingbright APT1608SGC", "INLINE: lit while the coils are energized"),
}
for k in range(1, 9):
    PARTS[f"K{k}"] = (
        "G6K-2F-Y DC5",
        "Omron G6K-2F-Y DC5 (2 Form C signal relay)",
        f"jack {'A' if k <= 4 else 'B'} pair {PAIRS[(k - 1) % 4]}",
    )
    PARTS[f"D{k}"] = ("1N4148W", "Diodes Inc. 1N4148W-7-F (SOD-123)", f"flyback across K{k}")


def nets():
    """net name -> [(ref, pin)]; relay pins by function name (COM1, NC1,
    NO1, COM2, NC2, NO2, COIL+, COIL-), the footprint's numbers are in the
    relay's datasheet."""
    n = {}

    def add(net, ref, pin):
        n.setdefault(net, []).append((ref, str(pin)))

    for i, pair in enumerate(PAIRS):
        ka, kb = f"K{i + 1}", f"K{i + 5}"
        for c, wire in zip((1, 2), pair):
            add(f"A_LINE{wire}", "J1", wire)
            add(f"A_LINE{wire}", ka, f"COM{c}")
            add(f"A_PI{wire}", "J3", wire)
            add(f"A_PI{wire}", ka, f"NO{c}")
            add(f"B_LINE{wire}", "J2", wire)
            add(f"B_LINE{wire}", kb, f"COM{c}")
            add(f"B_PI{wire}", "J4", wire)
            add(f"B_PI{wire}", kb, f"NO{c}")
            # Released, jack A's wire meets jack B's: the cable end to end.
            add(f"BYPASS{wire}", ka, f"NC{c}")
            add(f"BYPASS{wire}", kb, f"NC{c}")
    for k in range(1, 9):
        add("+5V", f"K{k}", "COIL+")
        add("COILS_LOW", f"K{k}", "COIL-")
        add("+5V", f"D{k}", "K")
        add("COILS_LOW", f"D{k}", "A")
    for pin in (2, 4):
        add("+5V", "J5", pin)
    for pin in (1, 17):
        add("+3V3", "J5", pin)
    for pin in (6, 9, 14, 20, 25, 30, 34, 39):
        add("GND", "J5", pin)
    add("TRIG", "J5", TRIG_PIN)
    add("TRIG", "U1", "B")
    add("TRIG", "R1", 1)
    add("GND", "R1", 2)
    add("GND", "U1", "A")  # A low: a rising edge on B triggers
    add("+3V3", "U1", "CLR")
    add("+3V3", "U1", "VCC")
    add("GND", "U1", "GND")
    add("+3V3", "C2", 1)
    add("GND", "C2", 2)
    add("CEXT", "U1", "CEXT")
    add("CEXT", "C1", 1)
    add("RCEXT", "U1", "REXT/CEXT")
    add("RCEXT", "C1", 2)
    add("RCEXT", "R2", 1)
    add("+3V3", "R2", 2)
    add("HOLD", "U1", "Q")
    add("HOLD", "R3", 1)
    add("GATE", "R3", 2)
    add("GATE", "R4", 1)
    add("GND", "R4", 2)
    add("GATE", "Q1", "G")
    add("GND", "Q1", "S")
    add("COILS_LOW", "Q1", "D")
    add("+5V", "C3", 1)
    add("GND", "C3", 2)
    add("+5V", "R5", 1)
    add("LED_A", "R5", 2)
    add("LED_A", "D9", "A")
    add("COILS_LOW", "D9", "K")
    return n


def netlist():
    out = ['(export (version "E")', '  (design (source "hardware/bypass/gen.py") (tool "gen.py"))', "  (components"]
    for ref in sorted(PARTS, key=lambda r: (r.rstrip("0123456789"), int(r.lstrip("ABCDEFGHIJKLMNOPQRSTUVWXYZ")))):
        value, part, desc = PARTS[ref]
        out.append(f'    (comp (ref "{ref}") (value "{value}") (footprint "{part}") (description "{desc}"))')
    out.append("  )")
    out.append("  (nets")
    for code, (name, nodes) in enumerate(sorted(nets().items()), start=1):
        body = " ".join(f'(node (ref "{r}") (pin "{p}"))' for r, p in nodes)
        out.append(f'    (net (code "{code}") (name "{name}") {body})')
    out.append("  )")
    out.append(")")
    return "\n".join(out) + "\n"


def svg():
    """One wire's switch pair drawn per pin (eight rows), the driver below."""
    w, row = 1100, 56
    top = 70
    h = top + 8 * row + 330
    s = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" '
        'font-family="DejaVu Sans, sans-serif" font-size="13">',
        f'<rect width="{w}" height="{h}" fill="white"/>',
        '<text x="20" y="28" font-size="18" font-weight="bold">PiTap bypass board: relays released (drawn), jack A meets jack B</text>',
        '<text x="20" y="50">Each row is one wire; K1-K4 switch jack A\'s pairs, K5-K8 jack B\'s (2 Form C each). '
        "Energized, COM moves to NO: each jack reaches its Pi port.</text>",
    ]
    xa, xka, xkb, xb = 60, 300, 800, 1040
    wires = [w_ for pair in PAIRS for w_ in pair]
    for i, wire in enumerate(wires):
        y = top + 30 + i * row
        pair = next(j for j, p in enumerate(PAIRS) if wire in p)
        ka, kb = f"K{pair + 1}", f"K{pair + 5}"
        s.append(f'<text x="{xa - 45}" y="{y + 4}">J1.{wire}</text>')
        s.append(f'<text x="{xb + 8}" y="{y + 4}">J2.{wire}</text>')
        s.append(f'<line x1="{xa}" y1="{y}" x2="{xka}" y2="{y}" stroke="black"/>')
        s.append(f'<line x1="{xkb + 60}" y1="{y}" x2="{xb}" y2="{y}" stroke="black"/>')
        # Switch A: COM at xka, NC contact towards B, NO up to J3.
        s.append(f'<circle cx="{xka}" cy="{y}" r="3"/>')
        s.append(f'<line x1="{xka}" y1="{y}" x2="{xka + 55}" y2="{y}" stroke="black" stroke-width="2"/>')
        s.append(f'<circle cx="{xka + 60}" cy="{y}" r="3" fill="white" stroke="black"/>')
        s.append(f'<circle cx="{xka + 60}" cy="{y - 18}" r="3" fill="white" stroke="black"/>')
        s.append(f'<text x="{xka + 70}" y="{y - 14}" font-size="11">NO -&gt; J3.{wire} (Pi port A)</text>')
        s.append(f'<text x="{xka - 5}" y="{y + 17}" font-size="11">{ka} COM</text>')
        # Bypass path between the NC contacts.
        s.append(f'<line x1="{xka + 63}" y1="{y}" x2="{xkb - 3}" y2="{y}" stroke="#1a7f37" stroke-width="2"/>')
        s.append(f'<text x="{(xka + xkb) // 2 - 30}" y="{y - 4}" font-size="11" fill="#1a7f37">BYPASS{wire}</text>')
        # Switch B mirrored.
        s.append(f'<circle cx="{xkb}" cy="{y}" r="3" fill="white" stroke="black"/>')
        s.append(f'<circle cx="{xkb}" cy="{y - 18}" r="3" fill="white" stroke="black"/>')
        s.append(f'<line x1="{xkb + 5}" y1="{y}" x2="{xkb + 60}" y2="{y}" stroke="black" stroke-width="2"/>')
        s.append(f'<circle cx="{xkb + 60}" cy="{y}" r="3"/>')
        s.append(f'<text x="{xkb - 150}" y="{y - 14}" font-size="11">(Pi port B) J4.{wire} &lt;- NO</text>')
        s.append(f'<text x="{xkb + 35}" y="{y + 17}" font-size="11">{kb} COM</text>')
    y0 = top + 8 * row + 40
    s.append(f'<text x="20" y="{y0}" font-size="16" font-weight="bold">Coil driver</text>')
    lines = [
        f"J5 pin {TRIG_PIN} (GPIO26, TRIG) --+-- U1 74LVC1G123 input B (rising edge triggers; A = GND, CLR = 3V3)",
        "                          +-- R1 10k -- GND   (no edge while the Pi boots or is off)",
        "U1 Q --[R3 100]-- GATE --+-- Q1 AO3400A gate;  R4 100k GATE -- GND",
        "U1 Rext/Cext --[R2 240k]-- 3V3;  C1 1uF between Cext and Rext/Cext: Q stays high ~240 ms after the last edge",
        "J5 pin 2/4 (+5V) --+-- K1..K8 coil+ ;  K1..K8 coil- -- COILS_LOW -- Q1 drain;  Q1 source -- GND",
        "                   +-- D1..D8 1N4148W, cathode at +5V, anode at COILS_LOW (one across each coil)",
        "                   +-- R5 1k -- D9 INLINE (green) -- COILS_LOW: lit while the coils are energized",
        "J5 pin 1/17 (+3V3) -- U1 VCC, C2 100nF;  J5 pins 6, 9, 14, 20, 25, 30, 34, 39 -- GND;  C3 10uF on +5V",
        "No 5 V, no edges (pitapd killed, kernel hung, watchdog reset): Q low, coils off, NC closed: A meets B.",
    ]
    for i, text in enumerate(lines):
        t = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        s.append(f'<text x="30" y="{y0 + 28 + i * 24}" font-family="DejaVu Sans Mono, monospace" font-size="12" '
                 f'xml:space="preserve">{t}</text>')
    s.append("</svg>")
    return "\n".join(s) + "\n"


def main():
    outputs = {"bypass.net": netlist(), "schematic.svg": svg()}
    if "--check" in sys.argv[1:]:
        stale = [n for n, text in outputs.items() if (HERE / n).read_text() != text]
        if stale:
            sys.exit(f"hardware/bypass: {', '.join(stale)} differ from gen.py's output; run python3 hardware/bypass/gen.py")
        return
    for name, text in outputs.items():
        (HERE / name).write_text(text)


if __name__ == "__main__":
    main()

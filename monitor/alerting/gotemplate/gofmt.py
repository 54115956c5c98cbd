"""Go's fmt for template values: `Sprint`, `Sprintf`, `Sprintln` and the verbs they take.

A port of `fmt/print.go` and `fmt/format.go` (Go 1.19) for the values templates meet: flags
`+ - # 0 space`, width and precision (also `*` and `[n]` argument indexes), verbs
`v T t d b o O x X c q U e E f F g G s p`, and Go's in-band errors such as
`%!d(float64=1.5)`, `%!s(MISSING)`, `%!(EXTRA int=1)` and `%!(NOVERB)`. Go has no
addresses to show here, so `%p` and nested pointers print a fixed 0xc000010000.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from monitor.alerting.gotemplate.numbers import format_float_verb, sharp_float
from monitor.alerting.gotemplate.quoting import can_backquote, go_quote, go_quote_rune, is_print
from monitor.alerting.gotemplate.values import GoStruct, GoValue, go_kind, go_type_name

_MAX_WIDTH = 1_000_000
# Go accepts widths and precisions up to 99,999,999; nothing that long fits in a template's
# output (see executor.Limits), so they are capped here to keep one printf call cheap.
MAX_FORMATTED = (16 << 20) + 1
_FAKE_ADDRESS = 0xC000010000
_UNSET = object()


def sprint(args: Sequence[Any]) -> str:
    printer = _Printer()
    previous_was_string = False
    for index, arg in enumerate(args):
        is_string = go_kind(arg) == "string"
        if index > 0 and not is_string and not previous_was_string:
            printer.out.append(" ")
        printer.print_arg(arg, "v")
        previous_was_string = is_string
    return "".join(printer.out)


def sprintln(args: Sequence[Any]) -> str:
    printer = _Printer()
    for index, arg in enumerate(args):
        if index > 0:
            printer.out.append(" ")
        printer.print_arg(arg, "v")
    return "".join(printer.out) + "\n"


def sprintf(format_string: str, args: Sequence[Any]) -> str:
    printer = _Printer()
    printer.do_printf(format_string, list(args))
    return "".join(printer.out)


class _Printer:
    """One `pp`: the output buffer, the current flags and what is being printed."""

    def __init__(self) -> None:
        self.out: list[str] = []
        self.arg: Any = _UNSET
        self.value: Any = _UNSET
        self.erroring = False
        self.clear_flags()

    def clear_flags(self) -> None:
        self.wid_present = self.prec_present = False
        self.minus = self.plus = self.sharp = self.space = self.zero = False
        self.plus_v = self.sharp_v = False
        self.wid = self.prec = 0

    # --- padding ----------------------------------------------------------------------

    def _padding(self, count: int) -> str:
        return ("0" if self.zero else " ") * min(count, MAX_FORMATTED) if count > 0 else ""

    def pad(self, text: str) -> None:
        if not self.wid_present or self.wid == 0:
            self.out.append(text)
            return
        fill = self._padding(self.wid - len(text))
        self.out.append(text + fill if self.minus else fill + text)

    # --- verbs by value kind ----------------------------------------------------------

    def bad_verb(self, verb: str) -> None:
        self.erroring = True
        self.out.append("%!" + verb + "(")
        if self.arg is not _UNSET and self.arg is not None:
            self.out.append(go_type_name(self.arg) + "=")
            self.print_arg(self.arg, "v")
        elif self.value is not _UNSET and self.value is not None:
            self.out.append(go_type_name(self.value) + "=")
            self.print_value(self.value, "v", 0)
        else:
            self.out.append("<nil>")
        self.out.append(")")
        self.erroring = False

    def fmt_bool(self, value: bool, verb: str) -> None:
        if verb in "tv":
            self.pad("true" if value else "false")
        else:
            self.bad_verb(verb)

    def fmt_integer(self, value: int, verb: str, *, signed: bool) -> None:
        if verb == "v":
            if self.sharp_v and not signed:
                self._integer(value, 16, verb, "0123456789abcdefx", sharp=True)
            else:
                self._integer(value, 10, verb, "0123456789abcdefx")
        elif verb in "dboOxX":
            base = {"d": 10, "b": 2, "o": 8, "O": 8, "x": 16, "X": 16}[verb]
            digits = "0123456789ABCDEFX" if verb == "X" else "0123456789abcdefx"
            self._integer(value, base, verb, digits)
        elif verb == "c":
            self.pad(chr(_valid_rune(value)))
        elif verb == "q":
            self.pad(go_quote_rune(_valid_rune(value), ascii_only=self.plus))
        elif verb == "U":
            self._unicode(value)
        else:
            self.bad_verb(verb)

    def _integer(self, value: int, base: int, verb: str, digits: str, *,
                 sharp: bool | None = None) -> None:
        negative = value < 0
        magnitude = -value if negative else value
        sharp = self.sharp if sharp is None else sharp
        prec = 0
        if self.prec_present:
            prec = self.prec
            if prec == 0 and magnitude == 0:
                saved, self.zero = self.zero, False
                self.out.append(self._padding(self.wid))
                self.zero = saved
                return
        elif self.zero and self.wid_present:
            prec = self.wid
            if negative or self.plus or self.space:
                prec -= 1
        text = ""
        while True:
            text = digits[magnitude % base] + text
            magnitude //= base
            if magnitude == 0:
                break
        text = text.rjust(prec, "0")
        if sharp:
            if base == 2:
                text = "0b" + text
            elif base == 8 and text[0] != "0":
                text = "0" + text
            elif base == 16:
                text = "0" + digits[16] + text
        if verb == "O":
            text = "0o" + text
        if negative:
            text = "-" + text
        elif self.plus:
            text = "+" + text
        elif self.space:
            text = " " + text
        saved, self.zero = self.zero, False
        self.pad(text)
        self.zero = saved

    def _unicode(self, value: int) -> None:
        prec = self.prec if self.prec_present and self.prec > 4 else 4
        text = "U+" + format(value & 0xFFFFFFFFFFFFFFFF, "X").rjust(prec, "0")
        if self.sharp and 0 <= value <= 0x10FFFF and is_print(chr(value)):
            text += " '" + chr(value) + "'"
        saved, self.zero = self.zero, False
        self.pad(text)
        self.zero = saved

    def fmt_float(self, value: float, verb: str) -> None:
        if verb == "v":
            self._float(value, "g", -1)
        elif verb in "bgGxX":
            self._float(value, verb, -1)
        elif verb in "feE":
            self._float(value, verb, 6)
        elif verb == "F":
            self._float(value, "f", 6)
        else:
            self.bad_verb(verb)

    def _float(self, value: float, verb: str, prec: int) -> None:
        if self.prec_present:
            prec = self.prec
        num = format_float_verb(value, verb, prec)
        num = num if num[0] in "+-" else "+" + num
        if self.space and num[0] == "+" and not self.plus:
            num = " " + num[1:]
        if num[1] in "IN":
            saved, self.zero = self.zero, False
            if num[1] == "N" and not self.space and not self.plus:
                num = num[1:]
            self.pad(num)
            self.zero = saved
            return
        if self.sharp and verb != "b":
            num = sharp_float(num, verb, prec)
        if self.plus or num[0] != "+":
            if self.zero and self.wid_present and self.wid > len(num):
                self.out.append(num[0] + "0" * (self.wid - len(num)) + num[1:])
                return
            self.pad(num)
            return
        self.pad(num[1:])

    def fmt_complex(self, value: complex, verb: str) -> None:
        if verb not in "vbgGxXfFeE":
            self.bad_verb(verb)
            return
        saved_plus = self.plus
        self.out.append("(")
        self.fmt_float(value.real, verb)
        self.plus = True
        self.fmt_float(value.imag, verb)
        self.out.append("i)")
        self.plus = saved_plus

    def fmt_string(self, value: str, verb: str) -> None:
        if verb == "v":
            self._quoted(value) if self.sharp_v else self.pad(self._truncate(value))
        elif verb == "s":
            self.pad(self._truncate(value))
        elif verb in "xX":
            self._hex_string(value, "0123456789ABCDEFX" if verb == "X" else "0123456789abcdefx")
        elif verb == "q":
            self._quoted(value)
        else:
            self.bad_verb(verb)

    def _truncate(self, value: str) -> str:
        return value[: self.prec] if self.prec_present else value

    def _quoted(self, value: str) -> None:
        value = self._truncate(value)
        if self.sharp and can_backquote(value):
            self.pad("`" + value + "`")
        else:
            self.pad(go_quote(value, ascii_only=self.plus))

    def _hex_string(self, value: str, digits: str) -> None:
        data = value.encode("utf-8", errors="replace")
        length = min(len(data), self.prec) if self.prec_present else len(data)
        if length <= 0:
            if self.wid_present:
                self.out.append(self._padding(self.wid))
            return
        parts = []
        for index, byte in enumerate(data[:length]):
            prefix = "0" + digits[16] if self.sharp and (index == 0 or self.space) else ""
            separator = " " if self.space and index > 0 else ""
            parts.append(separator + prefix + digits[byte >> 4] + digits[byte & 0xF])
        text = "".join(parts)
        fill = self._padding(self.wid - len(text)) if self.wid_present else ""
        self.out.append(text + fill if self.minus else fill + text)

    def fmt_pointer(self, value: Any, verb: str) -> None:
        if go_kind(value) not in ("map", "slice", "ptr"):
            self.bad_verb(verb)
        elif verb == "v" and self.sharp_v:
            self.out.append(f"({go_type_name(value)})(0x{_FAKE_ADDRESS:x})")
        elif verb in "vp":
            self._integer(_FAKE_ADDRESS, 16, "v", "0123456789abcdefx", sharp=not self.sharp)
        elif verb in "bodxX":
            self.fmt_integer(_FAKE_ADDRESS, verb, signed=False)
        else:
            self.bad_verb(verb)

    # --- dispatch -----------------------------------------------------------------------

    def handle_methods(self, verb: str) -> bool:
        if self.erroring or self.sharp_v or verb not in "vsxXq":
            return False
        if isinstance(self.arg, GoValue):
            text = self.arg.stringer()
            if text is not None:
                self.fmt_string(text, verb)
                return True
        return False

    def print_arg(self, arg: Any, verb: str) -> None:
        self.arg = arg
        self.value = _UNSET
        if arg is None:
            if verb in "Tv":
                self.pad("<nil>")
            else:
                self.bad_verb(verb)
            return
        if verb == "T":
            self.pad(self._truncate(go_type_name(arg)))
            return
        if verb == "p":
            self.fmt_pointer(arg, "p")
            return
        if not isinstance(arg, GoValue) or not self.handle_methods(verb):
            self.print_value(arg, verb, 0)

    def print_value(self, value: Any, verb: str, depth: int) -> None:
        if depth > 0 and value is not None:
            self.arg = value
            if self.handle_methods(verb):
                return
        self.arg = _UNSET
        self.value = value
        kind = go_kind(value)
        if kind == "invalid":
            if depth == 0:
                self.out.append("<invalid reflect.Value>")
            else:  # inside a container, nil is a nil interface {}: Go prints it whatever the verb
                self.out.append("interface {}(nil)" if self.sharp_v else "<nil>")
        elif kind == "bool":
            self.fmt_bool(value, verb)
        elif kind in ("int", "uint"):
            self.fmt_integer(value, verb, signed=kind == "int")
        elif kind == "float":
            self.fmt_float(value, verb)
        elif kind == "complex":
            self.fmt_complex(value, verb)
        elif kind == "string":
            self.fmt_string(value, verb)
        elif kind == "map":
            self._print_map(value, verb, depth)
        elif kind == "slice":
            self._print_slice(value, verb, depth)
        elif kind == "struct" and isinstance(value, GoStruct):
            self._print_struct(value, verb, depth)
        elif kind == "ptr" and isinstance(value, GoStruct) and depth == 0:
            self.out.append("&")
            self._print_struct(value, verb, depth + 1)
        else:
            self.fmt_pointer(value, verb)

    def _print_map(self, value: Mapping[str, Any], verb: str, depth: int) -> None:
        type_name = go_type_name(value)
        self.out.append(type_name + "{" if self.sharp_v else "map[")
        for index, key in enumerate(sorted(value)):
            if index > 0:
                self.out.append(", " if self.sharp_v else " ")
            self.print_value(key, verb, depth + 1)
            self.out.append(":")
            self.print_value(value[key], verb, depth + 1)
        self.out.append("}" if self.sharp_v else "]")

    def _print_slice(self, value: Sequence[Any], verb: str, depth: int) -> None:
        if self.sharp_v:
            self.out.append(go_type_name(value) + "{")
        else:
            self.out.append("[")
        for index, item in enumerate(value):
            if index > 0:
                self.out.append(", " if self.sharp_v else " ")
            self.print_value(item, verb, depth + 1)
        self.out.append("}" if self.sharp_v else "]")

    def _print_struct(self, value: GoStruct, verb: str, depth: int) -> None:
        if self.sharp_v:
            self.out.append(value.type_name.lstrip("*"))
        self.out.append("{")
        for index, (name, item) in enumerate(value.fields.items()):
            if index > 0:
                self.out.append(", " if self.sharp_v else " ")
            if self.plus_v or self.sharp_v:
                self.out.append(name + ":")
            self.print_value(item, verb, depth + 1)
        self.out.append("}")

    # --- Printf ---------------------------------------------------------------------------

    def do_printf(self, fmt: str, args: list[Any]) -> None:  # noqa: PLR0915
        end = len(fmt)
        arg_num = 0
        after_index = False
        reordered = False
        i = 0
        while i < end:
            good_arg_num = True
            start = i
            while i < end and fmt[i] != "%":
                i += 1
            if i > start:
                self.out.append(fmt[start:i])
            if i >= end:
                break
            i += 1
            self.clear_flags()
            simple_verb_done = False
            while i < end:
                ch = fmt[i]
                if ch == "#":
                    self.sharp = True
                elif ch == "0":
                    self.zero = not self.minus
                elif ch == "+":
                    self.plus = True
                elif ch == "-":
                    self.minus = True
                    self.zero = False
                elif ch == " ":
                    self.space = True
                else:
                    if "a" <= ch <= "z" and arg_num < len(args):
                        if ch == "v":
                            self.sharp_v, self.sharp = self.sharp, False
                            self.plus_v, self.plus = self.plus, False
                        self.print_arg(args[arg_num], ch)
                        arg_num += 1
                        i += 1
                        simple_verb_done = True
                    break
                i += 1
            if simple_verb_done:
                continue
            arg_num, i, after_index, ok = _arg_number(arg_num, fmt, i, len(args))
            reordered = reordered or ok is not None
            good_arg_num = good_arg_num and ok is not False
            if i < end and fmt[i] == "*":
                i += 1
                self.wid, self.wid_present, arg_num = _int_from_arg(args, arg_num)
                if not self.wid_present:
                    self.out.append("%!(BADWIDTH)")
                if self.wid < 0:
                    self.wid = -self.wid
                    self.minus = True
                    self.zero = False
                after_index = False
            else:
                self.wid, self.wid_present, i = _parse_num(fmt, i, end)
                if after_index and self.wid_present:
                    good_arg_num = False
            if i + 1 < end and fmt[i] == ".":
                i += 1
                if after_index:
                    good_arg_num = False
                arg_num, i, after_index, ok = _arg_number(arg_num, fmt, i, len(args))
                reordered = reordered or ok is not None
                good_arg_num = good_arg_num and ok is not False
                if i < end and fmt[i] == "*":
                    i += 1
                    self.prec, self.prec_present, arg_num = _int_from_arg(args, arg_num)
                    if self.prec < 0:
                        self.prec, self.prec_present = 0, False
                    if not self.prec_present:
                        self.out.append("%!(BADPREC)")
                    after_index = False
                else:
                    self.prec, self.prec_present, i = _parse_num(fmt, i, end)
                    if not self.prec_present:
                        self.prec, self.prec_present = 0, True
            self.wid = min(self.wid, MAX_FORMATTED)
            self.prec = min(self.prec, MAX_FORMATTED)
            if not after_index:
                arg_num, i, after_index, ok = _arg_number(arg_num, fmt, i, len(args))
                reordered = reordered or ok is not None
                good_arg_num = good_arg_num and ok is not False
            if i >= end:
                self.out.append("%!(NOVERB)")
                break
            verb = fmt[i]
            i += 1
            if verb == "%":
                self.out.append("%")
            elif not good_arg_num:
                self.out.append("%!" + verb + "(BADINDEX)")
            elif arg_num >= len(args):
                self.out.append("%!" + verb + "(MISSING)")
            else:
                if verb == "v":
                    self.sharp_v, self.sharp = self.sharp, False
                    self.plus_v, self.plus = self.plus, False
                self.print_arg(args[arg_num], verb)
                arg_num += 1
        if not reordered and arg_num < len(args):
            self.clear_flags()
            self.out.append("%!(EXTRA ")
            for index, arg in enumerate(args[arg_num:]):
                if index > 0:
                    self.out.append(", ")
                if arg is None:
                    self.out.append("<nil>")
                else:
                    self.out.append(go_type_name(arg) + "=")
                    self.print_arg(arg, "v")
            self.out.append(")")


def _parse_num(fmt: str, start: int, end: int) -> tuple[int, bool, int]:
    """Go's `parsenum`: (number, whether there was one, index after it)."""
    num = 0
    found = False
    i = start
    while i < end and "0" <= fmt[i] <= "9":
        if num > _MAX_WIDTH:
            return 0, False, end
        num = num * 10 + int(fmt[i])
        found = True
        i += 1
    return num, found, i


def _arg_number(
    arg_num: int, fmt: str, i: int, num_args: int
) -> tuple[int, int, bool, bool | None]:
    """Go's `argNumber`: (arg index, new i, found, ok); ok is None when there was no [n]."""
    if i >= len(fmt) or fmt[i] != "[":
        return arg_num, i, False, None
    close = fmt.find("]", i + 1)
    if len(fmt) - i < 3 or close < 0:
        return arg_num, i + 1, False, False
    index, found, after = _parse_num(fmt, i + 1, close)
    if not found or after != close:
        return arg_num, close + 1, False, False
    if 0 <= index - 1 < num_args:
        return index - 1, close + 1, True, True
    return arg_num, close + 1, True, False


def _int_from_arg(args: list[Any], arg_num: int) -> tuple[int, bool, int]:
    if arg_num >= len(args):
        return 0, False, arg_num
    arg = args[arg_num]
    is_int = go_kind(arg) in ("int", "uint") and abs(arg) <= _MAX_WIDTH
    return (int(arg) if is_int else 0), is_int, arg_num + 1


def _valid_rune(value: int) -> int:
    return 0xFFFD if value < 0 or value > 0x10FFFF or 0xD800 <= value <= 0xDFFF else value

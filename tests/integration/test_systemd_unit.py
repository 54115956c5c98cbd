"""The shipped systemd unit, sysusers and tmpfiles snippets, checked with systemd's own tools.

- `systemd-analyze verify` prints nothing about the unit (warnings count as failures: verify
  exits 0 on many of them).
- `systemd-analyze security --offline=true` rates the unit at 2.0 or less.
- The hardening keeps what the daemon needs (notify protocol, watchdog, reload by SIGHUP,
  state directory, /proc, NVIDIA device nodes, outbound sockets).
- MemoryDenyWriteExecute=yes does not break the Python stack: it runs under an equivalent
  seccomp filter.

Skips where the systemd tools are absent unless INFERWATCH_REQUIRE_INTEGRATION=1.
"""

from __future__ import annotations

import fnmatch
import os
import platform
import re
import shutil
import struct
import subprocess
import sys
import textwrap
from collections import defaultdict
from pathlib import Path

import pytest
from conftest import require_program

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "systemd" / "inferwatch.service"
SYSUSERS = ROOT / "systemd" / "inferwatch.sysusers"
TMPFILES = ROOT / "systemd" / "inferwatch.tmpfiles"
PRODUCTION_BINARY = "/opt/inferwatch/venv/bin/inferwatch"
TIMEOUT = 60
ENV = {**os.environ, "SYSTEMD_COLORS": "0", "SYSTEMD_PAGER": "", "SYSTEMD_LOG_COLOR": "0"}


def _tool(name: str) -> str:
    return str(require_program(name))


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv, capture_output=True, text=True, timeout=TIMEOUT, env=ENV, check=False
    )


def parse_unit(text: str) -> dict[str, dict[str, list[str]]]:
    """Section -> key -> every value in order (unit files repeat keys; configparser cannot)."""
    sections: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    section = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        assert not line.endswith("\\"), f"continuation lines are not parsed here: {raw!r}"
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            continue
        key, sep, value = line.partition("=")
        assert sep, f"not a key=value line: {raw!r}"
        sections[section][key.strip()].append(value.strip())
    return sections


@pytest.fixture(scope="module")
def service() -> dict[str, list[str]]:
    return parse_unit(UNIT.read_text())["Service"]


# --- systemd-analyze ---------------------------------------------------------------------


def test_verify_reports_nothing_about_the_unit(tmp_path: Path) -> None:
    analyze = _tool("systemd-analyze")
    # verify insists that ExecStart's binary exists and is executable; stand in for the
    # production venv with an executable at a path of our own, arguments unchanged.
    binary = tmp_path / "bin" / "inferwatch"
    binary.parent.mkdir()
    binary.write_text("#!/bin/sh\nexit 0\n")
    binary.chmod(0o755)
    text = UNIT.read_text()
    assert f"ExecStart={PRODUCTION_BINARY} " in text
    unit = tmp_path / "inferwatch.service"
    unit.write_text(text.replace(f"ExecStart={PRODUCTION_BINARY} ", f"ExecStart={binary} "))

    result = _run(analyze, "verify", "--man=no", str(unit))

    output = (result.stdout + result.stderr).splitlines()
    about_unit = [line for line in output if "inferwatch" in line]
    assert result.returncode == 0, "\n".join(output)
    assert about_unit == [], "\n".join(about_unit)


def test_security_exposure_is_at_most_2_0() -> None:
    analyze = _tool("systemd-analyze")
    # --threshold is in tenths: exit non-zero above 2.0.
    result = _run(analyze, "security", "--offline=true", "--threshold=20", "--no-pager", str(UNIT))
    match = re.search(r"Overall exposure level for inferwatch\.service: (\d+\.\d+)", result.stdout)
    assert match, result.stdout + result.stderr
    assert float(match.group(1)) <= 2.0, result.stdout
    assert result.returncode == 0, result.stdout + result.stderr


def test_sysusers_creates_a_system_user_without_a_shell(tmp_path: Path) -> None:
    sysusers = _tool("systemd-sysusers")
    (tmp_path / "etc").mkdir()
    result = _run(sysusers, f"--root={tmp_path}", str(SYSUSERS))
    assert result.returncode == 0, result.stderr

    passwd = (tmp_path / "etc/passwd").read_text().splitlines()
    group = (tmp_path / "etc/group").read_text().splitlines()
    users = {fields[0]: fields for fields in (line.split(":") for line in passwd)}
    groups = {fields[0]: fields for fields in (line.split(":") for line in group)}
    _, _, uid, gid, _, home, shell = users["inferwatch"]
    assert 0 < int(uid) < 1000  # the system range
    assert groups["inferwatch"][2] == gid
    assert home == "/var/lib/inferwatch"
    assert shell.endswith("nologin")


def test_tmpfiles_makes_etc_inferwatch_group_readable_only(tmp_path: Path) -> None:
    sysusers = _tool("systemd-sysusers")
    tmpfiles = _tool("systemd-tmpfiles")
    (tmp_path / "etc").mkdir()
    assert _run(sysusers, f"--root={tmp_path}", str(SYSUSERS)).returncode == 0
    config = tmp_path / "etc/inferwatch/inferwatch.yml"

    result = _run(tmpfiles, f"--root={tmp_path}", "--create", str(TMPFILES))
    config.write_text("{}\n")
    config.chmod(0o644)
    result2 = _run(tmpfiles, f"--root={tmp_path}", "--create", str(TMPFILES))

    directory = tmp_path / "etc/inferwatch"
    assert directory.stat().st_mode & 0o7777 == 0o750
    assert config.stat().st_mode & 0o7777 == 0o640
    gid = int((tmp_path / "etc/group").read_text().split("inferwatch:x:")[1].split(":")[0])
    if os.geteuid() == 0:
        assert result.returncode == 0, result.stderr
        assert result2.returncode == 0, result2.stderr
        assert (directory.stat().st_uid, directory.stat().st_gid) == (0, gid)
        assert (config.stat().st_uid, config.stat().st_gid) == (0, gid)
    else:  # only root may chown; everything else must have worked
        for out in (result, result2):
            problems = [ln for ln in out.stderr.splitlines() if "Operation not permitted" not in ln]
            assert problems == [], out.stderr


# --- what the daemon needs -----------------------------------------------------------------


def test_lifecycle_settings(service: dict[str, list[str]]) -> None:
    assert service["Type"] == ["notify"]
    assert service.get("NotifyAccess", ["main"])[-1] in {"main", "all"}
    (exec_start,) = service["ExecStart"]
    assert exec_start.split()[:2] == [PRODUCTION_BINARY, "run"]
    assert "--config" in exec_start.split()
    (reload_,) = service["ExecReload"]
    assert re.fullmatch(r"(/usr)?/bin/kill -HUP \$MAINPID", reload_)
    (watchdog,) = service["WatchdogSec"]
    assert re.fullmatch(r"[1-9]\d*s?", watchdog)
    assert service["Restart"] == ["on-failure"]
    assert "TimeoutStopSec" in service
    assert "PYTHONUNBUFFERED=1" in " ".join(service["Environment"])


def test_runs_unprivileged_with_its_own_state_directory(service: dict[str, list[str]]) -> None:
    assert service["User"][-1] not in {"", "root", "0"}
    assert "DynamicUser" not in service
    assert "inferwatch" in service["StateDirectory"][-1].split()
    assert service["NoNewPrivileges"] == ["yes"]
    assert service["CapabilityBoundingSet"] == [""]


def test_secrets_come_through_credentials(service: dict[str, list[str]]) -> None:
    credentials = service["LoadCredential"]
    ids = {value.split(":", 1)[0] for value in credentials}
    assert {"dingtalk.url", "dingtalk.secret", "smtp.pass"} <= ids
    for value in credentials:
        # A relative source is looked up in the credstore and skipped when missing; an
        # absolute one that is missing would fail the whole unit.
        source = value.split(":", 1)[-1]
        assert not source.startswith("/"), value


def test_proc_stays_readable_for_psutil_and_the_process_matcher(
    service: dict[str, list[str]],
) -> None:
    assert service.get("ProcSubset", ["all"])[-1] == "all"
    assert service.get("ProtectProc", ["default"])[-1] == "default"
    assert service.get("PrivateUsers", ["no"])[-1] in {"no", "false"}


def test_nvidia_devices_are_allowed(service: dict[str, list[str]]) -> None:
    assert service.get("PrivateDevices", ["no"])[-1] in {"no", "false"}
    assert service["DevicePolicy"] == ["closed"]
    allowed = dict(value.split() for value in service["DeviceAllow"])
    assert "rw" in {allowed.get("char-nvidia"), allowed.get("char-nvidia-frontend")}
    assert allowed["char-nvidiactl"] == "rw"
    assert allowed["char-nvidia-uvm"] == "rw"
    assert "r" in allowed["char-nvidia-caps"]


def test_device_groups_cover_the_nvidia_nodes_present_here(
    service: dict[str, list[str]],
) -> None:
    """On a GPU host: every /dev/nvidia* char device's major is matched by a DeviceAllow group."""
    nodes = [p for p in Path("/dev").glob("nvidia*") if p.is_char_device()]
    nodes += [p for p in Path("/dev/nvidia-caps").glob("*") if p.is_char_device()]
    if not nodes:
        pytest.skip("no /dev/nvidia* device nodes on this host")
    text = Path("/proc/devices").read_text()
    char_section = text.split("Block devices:")[0]
    majors: defaultdict[int, list[str]] = defaultdict(list)
    for line in char_section.splitlines()[1:]:
        number, _, name = line.strip().partition(" ")
        if number.isdigit():
            majors[int(number)].append(name)
    patterns = [v.split()[0].removeprefix("char-") for v in service["DeviceAllow"]]
    for node in nodes:
        names = majors[os.major(node.stat().st_rdev)]
        assert any(fnmatch.fnmatch(n, p) for n in names for p in patterns), (node, names)


def test_outbound_and_notify_sockets_are_allowed(service: dict[str, list[str]]) -> None:
    families = set(" ".join(service["RestrictAddressFamilies"]).split())
    assert {"AF_UNIX", "AF_INET", "AF_INET6"} <= families
    assert "IPAddressDeny" not in service
    assert "PrivateNetwork" not in service


# --- MemoryDenyWriteExecute=yes ------------------------------------------------------------

# systemd's MemoryDenyWriteExecute= filter (seccomp-util.c), as classic BPF for x86-64:
# EPERM for mmap with PROT_WRITE|PROT_EXEC, mprotect/pkey_mprotect adding PROT_EXEC, and
# shmat with SHM_EXEC. The probe installs it, checks that it bites, then exercises the
# daemon's dependency stack.
_MDWE_PROBE = textwrap.dedent(
    """
    import ctypes, mmap, struct, sys

    def ins(code, k, jt=0, jf=0):
        return struct.pack("HBBI", code, jt, jf, k)

    LD, JEQ, JSET, RET = 0x20, 0x15, 0x45, 0x06
    ALLOW, DENY, ARG2 = 0x7FFF0000, 0x00050001, 32
    prog = [
        ins(LD, 4), ins(JEQ, 0xC000003E, 1, 0), ins(RET, ALLOW),
        ins(LD, 0),
        ins(JEQ, 9, 4, 0), ins(JEQ, 10, 6, 0), ins(JEQ, 329, 5, 0), ins(JEQ, 30, 6, 0),
        ins(RET, ALLOW),
        ins(LD, ARG2), ins(JSET, 2, 0, 6), ins(JSET, 4, 4, 5),
        ins(LD, ARG2), ins(JSET, 4, 2, 3),
        ins(LD, ARG2), ins(JSET, 0o100000, 0, 1),
        ins(RET, DENY), ins(RET, ALLOW),
    ]

    class SockFprog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_char_p)]

    fprog = SockFprog(len(prog), b"".join(prog))
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(38, 1, 0, 0, 0) or libc.prctl(22, 2, ctypes.byref(fprog), 0, 0):
        print("SECCOMP-UNAVAILABLE", ctypes.get_errno())
        sys.exit(0)
    try:
        mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    except PermissionError:
        pass
    else:
        sys.exit("the filter is not active")

    import asyncio, sqlite3, ssl
    import aiohttp, jinja2, orjson, prometheus_client, promql_parser, psutil, pydantic
    import pynvml, yaml
    import monitor.sdnotify
    psutil.cpu_percent(); psutil.virtual_memory(); psutil.disk_usage("/")
    psutil.net_io_counters(); psutil.net_if_addrs(); psutil.net_if_stats()
    assert any(p.info["cmdline"] for p in psutil.process_iter(["cmdline"]))
    jinja2.Template("{{ x }}").render(x=1); orjson.loads(orjson.dumps({"a": 1}))
    promql_parser.parse("sum by (model) (rate(tokens_total[5m]))")
    ssl.create_default_context(); sqlite3.connect(":memory:").execute("select 1")
    try:
        pynvml.nvmlInit()
        print("NVML-OK")
    except pynvml.NVMLError as exc:
        print("NVML-ERROR", type(exc).__name__, exc)
    print("PROBE-OK")
    """
)


def test_python_stack_runs_without_writable_executable_memory(
    service: dict[str, list[str]],
) -> None:
    assert service["MemoryDenyWriteExecute"] == ["yes"]
    if sys.platform != "linux" or platform.machine() != "x86_64":
        pytest.skip("the probe's BPF program is written for x86-64 Linux")
    result = subprocess.run(
        [sys.executable, "-c", _MDWE_PROBE],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        check=False,
    )
    if "SECCOMP-UNAVAILABLE" in result.stdout:
        pytest.skip(f"cannot install a seccomp filter here: {result.stdout.strip()}")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "PROBE-OK" in result.stdout, result.stdout + result.stderr
    if _libnvidia_ml() is not None:
        # The library is installed, so failing to load it means the filter broke dlopen().
        assert "NVMLError_LibraryNotFound" not in result.stdout, result.stdout


def _libnvidia_ml() -> Path | None:
    ldconfig = shutil.which("ldconfig") or "/sbin/ldconfig"
    try:
        listing = subprocess.run(
            [ldconfig, "-p"], capture_output=True, text=True, timeout=TIMEOUT, check=False
        ).stdout
    except OSError:
        return None
    for line in listing.splitlines():
        if line.strip().startswith("libnvidia-ml.so.1 ") and "=>" in line:
            return Path(line.split("=>", 1)[1].strip())
    return None


def test_libnvidia_ml_does_not_ask_for_an_executable_stack() -> None:
    """A library marked execstack cannot be dlopen()ed under MemoryDenyWriteExecute=yes."""
    library = _libnvidia_ml()
    if library is None:
        pytest.skip("libnvidia-ml.so.1 is not installed")
    data = library.read_bytes()
    assert data[:4] == b"\x7fELF" and data[4] == 2 and data[5] == 1, "expected ELF64 LE"
    phoff = struct.unpack_from("<Q", data, 0x20)[0]
    phentsize, phnum = struct.unpack_from("<HH", data, 0x36)
    pt_gnu_stack, pf_x = 0x6474E551, 0x1
    for i in range(phnum):
        p_type, p_flags = struct.unpack_from("<II", data, phoff + i * phentsize)
        if p_type == pt_gnu_stack:
            assert not p_flags & pf_x, f"{library} wants an executable stack"
            return
    pytest.fail(f"{library} has no PT_GNU_STACK header (defaults to an executable stack)")

"""The installation scripts: syntax, shellcheck, what their dry runs would do, and the pre-upgrade backup."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = [REPO / "scripts" / n for n in ("install-collector.sh", "install-device.sh", "make-ca.sh")]


def sh(*args: str, check: bool = False) -> subprocess.CompletedProcess:
    proc = subprocess.run(["bash", *args], capture_output=True, text=True, timeout=120)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_scripts_parse(script):
    sh("-n", str(script), check=True)


@pytest.mark.skipif(
    shutil.which("shellcheck") is None, reason="shellcheck not installed (apt-get install shellcheck)"
)
@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_scripts_pass_shellcheck(script):
    proc = subprocess.run(["shellcheck", str(script)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout


def steps(output: str) -> list[str]:
    """The commands a dry run would run, in order."""
    return [line[2:] for line in output.splitlines() if line.startswith("+ ")]


def index_of(lines: list[str], needle: str) -> int:
    return next(i for i, line in enumerate(lines) if needle in line)


@pytest.fixture
def bundle(tmp_path) -> Path:
    b = tmp_path / "box-01"
    b.mkdir()
    for f in ("device.toml", "ca.crt", "mqtt-password"):
        (b / f).write_text("x\n")
    return b


def test_device_dry_run(bundle, tmp_path):
    prefix = tmp_path / "opt-amgs"
    out = sh(
        str(SCRIPTS[1]), "--dry-run", "--bundle", str(bundle), "--prefix", str(prefix), check=True
    ).stdout
    cmds = steps(out)
    venv = index_of(cmds, "-m venv --system-site-packages")
    pip = index_of(cmds, "--constraint")
    assert venv < pip and "src\\[device\\]" in cmds[pip]
    copy = index_of(cmds, "/etc/amgs/mqtt-password")
    assert "-m 0640" in cmds[copy] and "-g amgs" in cmds[copy]
    assert index_of(cmds, "device check --config /etc/amgs/device.toml") > copy
    assert index_of(cmds, "systemctl enable amgs-device.service") > index_of(
        cmds, "amgs-device.service /etc/systemd"
    )
    if subprocess.run(["id", "amgs"], capture_output=True).returncode != 0:
        assert "useradd" in out and "video\\,plugdev" in out
    assert not prefix.exists(), "--dry-run changed something"
    assert all(line.startswith(("==>", "+ ", "    ")) for line in out.splitlines()), out


def test_device_edgetpu_and_ntp_options(bundle, tmp_path):
    deb = tmp_path / "libedgetpu1-std_16.0_arm64.deb"
    deb.write_text("")
    out = sh(
        str(SCRIPTS[1]),
        "--dry-run",
        "--bundle",
        str(bundle),
        "--edgetpu-deb",
        str(deb),
        "--ntp",
        "10.200.0.1",
    )
    assert out.returncode == 0, out.stderr
    assert f"apt-get install -y -qq {deb}" in out.stdout
    assert "NTP=10.200.0.1" in out.stdout
    plain = sh(str(SCRIPTS[1]), "--dry-run", "--bundle", str(bundle), "--edgetpu").stdout
    assert "libedgetpu1-std" in plain


@pytest.mark.parametrize(
    ("args", "complaint"),
    [
        ([], "--bundle"),
        (["--bundle", "/nonexistent"], "device.toml is missing"),
        (["--bogus"], "unknown argument --bogus"),
    ],
)
def test_device_refuses_bad_arguments(args, complaint):
    proc = sh(str(SCRIPTS[1]), "--dry-run", *args)
    assert proc.returncode == 2 and complaint in proc.stderr


def test_collector_dry_run(tmp_path):
    out = sh(
        str(SCRIPTS[0]), "--dry-run", "--site", "vivarium-a", "--host", "collector.example", "--san", "10.1.2.3",
        "--state-dir", str(tmp_path / "state"), "--prefix", str(tmp_path / "opt"), check=True,
    ).stdout  # fmt: skip
    cmds = steps(out)
    assert "src\\[server\\]" in cmds[index_of(cmds, "pip install -q /")]
    ca = index_of(cmds, "make-ca.sh")
    assert cmds[ca].endswith("collector.example 10.1.2.3")
    assert index_of(cmds, "conf.d/amgs.conf") > ca
    assert index_of(cmds, "provision --config /etc/amgs/provision.toml collector") > index_of(
        cmds, "conf.d/amgs.conf"
    )
    assert index_of(cmds, "systemctl restart amgs-collector.service") > index_of(
        cmds, "systemctl restart mosquitto"
    )
    if not Path("/etc/amgs/provision.toml").exists():  # an existing installation keeps its settings
        assert 'site = "vivarium-a"' in out and 'broker_host = "collector.example"' in out
    assert not (tmp_path / "opt").exists()


def test_collector_upgrade_backs_up_before_new_code(tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    sqlite3.connect(state / "collector.db").execute("CREATE TABLE t (x)").connection.commit()
    out = sh(
        str(SCRIPTS[0]), "--dry-run", "--site", "s", "--host", "h", "--state-dir", str(state), check=True
    ).stdout
    cmds = steps(out)
    backup = index_of(cmds, "sqlite3.connect")
    assert backup < index_of(cmds, "pip install"), (
        "the database must be copied before the new code is installed"
    )
    assert f"{state}/backups/collector-" in cmds[backup]


def test_backup_only_copies_a_live_wal_database(tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    db = sqlite3.connect(state / "collector.db")
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("CREATE TABLE scores (msg_id TEXT PRIMARY KEY, seq INTEGER)")
    db.executemany("INSERT INTO scores VALUES (?, ?)", [(f"m{i}", i) for i in range(500)])
    db.commit()  # the rows sit in the WAL, the open connection keeps it there
    sh(str(SCRIPTS[0]), "--backup-only", "--state-dir", str(state), check=True)
    copies = list((state / "backups").glob("collector-*-pre-upgrade.db"))
    assert len(copies) == 1
    assert sqlite3.connect(copies[0]).execute("SELECT count(*), max(seq) FROM scores").fetchone() == (
        500,
        499,
    )


def test_collector_refuses_missing_site():
    proc = sh(str(SCRIPTS[0]), "--dry-run", "--host", "h")
    assert proc.returncode == 2 and "--site" in proc.stderr
    proc = sh(str(SCRIPTS[0]), "--dry-run", "--site", "bad site", "--host", "h")
    assert proc.returncode == 2 and "not an id" in proc.stderr


def test_make_ca_refuses_to_replace_the_ca_and_renews_the_server_certificate(tmp_path):
    if shutil.which("openssl") is None:
        pytest.skip("openssl not installed")
    d = tmp_path / "certs"
    sh(str(SCRIPTS[2]), "--dir", str(d), "collector.example", "10.1.2.3", check=True)
    ca_before = (d / "ca.crt").read_bytes()
    again = sh(str(SCRIPTS[2]), "--dir", str(d), "collector.example")
    assert again.returncode == 2 and "refusing to replace the CA" in again.stderr
    sh(
        str(SCRIPTS[2]),
        "--dir",
        str(d),
        "--server-only",
        "collector.example",
        "collector2.example",
        check=True,
    )
    assert (d / "ca.crt").read_bytes() == ca_before
    text = subprocess.run(
        ["openssl", "x509", "-in", str(d / "server.crt"), "-noout", "-ext", "subjectAltName"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert "DNS:collector2.example" in text
    subprocess.run(["openssl", "verify", "-CAfile", str(d / "ca.crt"), str(d / "server.crt")], check=True)
    assert oct((d / "ca.key").stat().st_mode & 0o777) == "0o600"
    bad = sh(str(SCRIPTS[2]), "--dir", str(tmp_path / "x"), "bad name!")
    assert bad.returncode == 2


def written_files(output: str) -> dict[str, str]:
    """The files a dry run would write: ``+ write PATH (...):`` followed by lines indented 4 spaces."""
    files, current = {}, None
    for line in output.splitlines():
        if line.startswith("+ write "):
            current = line.split()[2]
            files[current] = ""
        elif current and line.startswith("    "):
            files[current] += line[4:] + "\n"
        else:
            current = None
    return files


@pytest.mark.skipif(Path("/etc/amgs/server.toml").exists(), reason="an installed collector keeps its config")
def test_collector_configs_the_installer_writes_validate(tmp_path):
    """One definition: the installer's server.toml and provision.toml pass the programs' own schemas."""
    import tomllib

    from amgs.deploy.provision import ProvisionConfig
    from amgs.server.config import parse_config

    out = sh(
        str(SCRIPTS[0]), "--dry-run", "--site", "vivarium-a", "--host", "collector.example",
        "--state-dir", str(tmp_path / "state"), check=True,
    ).stdout  # fmt: skip
    files = written_files(out)
    server = parse_config(tomllib.loads(files["/etc/amgs/server.toml"]), "installer's server.toml")
    assert (server.mqtt.username, server.mqtt.site, server.mqtt.port) == ("collector", "vivarium-a", 1883)
    assert server.storage.state_dir == tmp_path / "state"
    assert server.web.view_requires_login, "nobody on the network may read scores without a login"
    prov = ProvisionConfig.model_validate(tomllib.loads(files["/etc/amgs/provision.toml"]))
    assert prov.server_config == Path("/etc/amgs/server.toml")
    assert prov.collector_password_file == server.mqtt.password_file
    assert prov.collector_user == server.mqtt.username

"""The pipeline on a repository whose registry is a real PostgreSQL server.

The module starts a throwaway cluster itself (``initdb``/``pg_ctl`` from
``/usr/lib/postgresql/*/bin`` or PATH, as the ``postgres`` user when run as
root) listening on 127.0.0.1 at a free port.  The module makes one database
in it and one butler repository with
``registry.db = postgresql://postgres@127.0.0.1:PORT/DB`` holding 4 visits ×
2 detectors (8 quanta); each test runs on it, into its own output collection,
the real ``pipetask``, ``bps submit bps/local_threads.yaml`` or ``bps submit
bps/slurm.yaml`` on the single-node Slurm cluster of test_slurm.py's
``slurm_cluster`` fixture, and checks the inputs are unchanged and its outputs
complete.  It skips only when no PostgreSQL server binary is
available (`.ci/run` installs Debian's ``postgresql`` package when missing).
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from _repo import LAYOUT, bps_submit, check_bps_outputs, check_inputs, check_outputs, populate_repo, run_pipetask
from test_slurm import SlurmCluster, check_ran_in_slurm, slurm_cluster  # noqa: F401 (a module fixture)

pytestmark = pytest.mark.slow


def _pg_bin() -> Path | None:
    """Directory holding initdb and pg_ctl (newest Debian version first)."""
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[-2]), reverse=True)
    for directory in candidates:
        if os.access(os.path.join(directory, "initdb"), os.X_OK) and os.access(
            os.path.join(directory, "pg_ctl"), os.X_OK
        ):
            return Path(directory)
    initdb = shutil.which("initdb")
    return Path(initdb).resolve().parent if initdb and shutil.which("pg_ctl") else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _as_server_user(command: list[str]) -> list[str]:
    """initdb/postgres refuse to run as root: use the ``postgres`` account."""
    if os.geteuid() != 0:
        return command
    runuser = shutil.which("runuser")
    if runuser is None:
        pytest.skip("Running as root without runuser: cannot start PostgreSQL as an unprivileged user.")
    return [runuser, "-u", "postgres", "--", *command]


class _Server:
    """The throwaway cluster on 127.0.0.1:``port`` (user ``postgres``, trust)."""

    def __init__(self, port: int) -> None:
        self.port = port

    def new_database(self, name: str) -> str:
        """Create database ``name`` with the btree_gist extension daf_butler
        needs (timespan exclusion constraints); return its URL."""
        import psycopg  # the driver SQLAlchemy 2 uses for postgresql:// URLs

        with psycopg.connect(host="127.0.0.1", port=self.port, user="postgres", dbname="postgres",
                             autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
        with psycopg.connect(host="127.0.0.1", port=self.port, user="postgres", dbname=name,
                             autocommit=True) as connection:
            connection.execute("CREATE EXTENSION IF NOT EXISTS btree_gist")
        return f"postgresql://postgres@127.0.0.1:{self.port}/{name}"


@pytest.fixture(scope="module")
def postgres_server() -> Iterator[_Server]:
    pg_bin = _pg_bin()
    if pg_bin is None:
        pytest.skip("No PostgreSQL server binaries (initdb, pg_ctl); install Debian's postgresql package.")
    if os.geteuid() == 0:
        import pwd

        try:
            pw = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("Running as root and there is no 'postgres' user to run the server as.")
    workdir = tempfile.mkdtemp(prefix="isrinject-pg-")
    data = os.path.join(workdir, "data")
    os.chmod(workdir, 0o755)
    if os.geteuid() == 0:
        os.chown(workdir, pw.pw_uid, pw.pw_gid)
    port = _free_port()
    log = os.path.join(workdir, "server.log")
    subprocess.run(
        _as_server_user([str(pg_bin / "initdb"), "-D", data, "-U", "postgres", "-A", "trust", "-E", "UTF8",
                         "--no-sync"]),
        check=True, capture_output=True, text=True,
    )
    options = f"-h 127.0.0.1 -p {port} -k {workdir} -c fsync=off -c synchronous_commit=off"
    started = subprocess.run(
        _as_server_user([str(pg_bin / "pg_ctl"), "-D", data, "-l", log, "-o", options, "-w", "-t", "60", "start"]),
        check=False, capture_output=True, text=True,
    )
    if started.returncode != 0:
        message = started.stderr + (Path(log).read_text() if os.path.exists(log) else "")
        shutil.rmtree(workdir, ignore_errors=True)
        pytest.fail(f"PostgreSQL did not start: {message[-2000:]}")
    try:
        yield _Server(port)
    finally:
        subprocess.run(_as_server_user([str(pg_bin / "pg_ctl"), "-D", data, "-m", "immediate", "-w", "stop"]),
                       check=False, capture_output=True)
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="module")
def postgres_repo(postgres_server: _Server, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list]:
    """The module's repository, its registry in a database of its own (two butler
    repositories in one database would share, and clash on, their tables):
    (root, the (visit, detector) pairs)."""
    from lsst.daf.butler import Butler, Config

    root = tmp_path_factory.mktemp("postgres") / "repo"
    Butler.makeRepo(str(root), config=Config({"registry": {"db": postgres_server.new_database("isrinject_tests")}}))
    butler = Butler.from_config(str(root), writeable=True)
    assert type(butler._registry._db).__name__ == "PostgresqlDatabase", butler._registry._db
    pairs = populate_repo(butler)
    return root, pairs


def test_pipetask_on_a_postgresql_registry(postgres_repo: tuple[Path, list]) -> None:
    from lsst.daf.butler import Butler

    root, pairs = postgres_repo
    check_inputs(Butler.from_config(str(root)), pairs)
    output = "u/test/postgres"
    start = time.monotonic()
    result = run_pipetask(root, LAYOUT.inputs, output)
    elapsed = time.monotonic() - start
    assert result.returncode == 0, result.stderr[-5000:]
    check_outputs(Butler.from_config(str(root)), pairs, output)
    check_inputs(Butler.from_config(str(root)), pairs)
    print(f"pipetask on PostgreSQL: {len(pairs)} quanta in {elapsed:.1f} s")


def test_bps_on_a_postgresql_registry(tmp_path: Path, postgres_repo: tuple[Path, list]) -> None:
    """``bps submit bps/local_threads.yaml`` on a PostgreSQL-registry repo:
    quantum-graph generation, pipetaskInit and the final ``butler
    aggregate-graph`` use the registry; the jobs (``pipetask run-qbb``) read
    and write the datastore only."""
    from lsst.daf.butler import Butler

    root, pairs = postgres_repo
    output = "u/test/bps_postgres"
    elapsed = bps_submit("local_threads", str(root), output, tmp_path)
    butler = Butler.from_config(str(root))
    assert type(butler._registry._db).__name__ == "PostgresqlDatabase"
    check_bps_outputs(butler, pairs, output, tmp_path)
    # The final job chained the output collection to the run it wrote.
    assert len(butler.collections.query(f"{output}/*")) == 1
    check_inputs(butler, pairs)
    print(f"bps submit local_threads on PostgreSQL: {len(pairs)} quanta in {elapsed:.1f} s")


def test_bps_slurm_on_a_postgresql_registry(
    tmp_path: Path, postgres_repo: tuple[Path, list], slurm_cluster: SlurmCluster  # noqa: F811 (the fixture)
) -> None:
    """``bps submit bps/slurm.yaml`` on a PostgreSQL-registry repo: the jobs
    ran as Slurm jobs of this workflow and every output is in the registry."""
    from lsst.daf.butler import Butler

    root, pairs = postgres_repo
    output = "u/test/slurm_postgres"
    elapsed = bps_submit("slurm", str(root), output, tmp_path)
    check_bps_outputs(Butler.from_config(str(root)), pairs, output, tmp_path)
    check_ran_in_slurm(slurm_cluster, tmp_path, output, pairs)
    print(f"bps submit slurm on PostgreSQL: {len(pairs)} quanta in {elapsed:.1f} s")

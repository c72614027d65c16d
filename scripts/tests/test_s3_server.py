"""The suite's S3 server keeps its files in its own directory, not in /tmp, and
starts even when a port it chose is taken before it binds it."""

import socket
from pathlib import Path

from scripts import s3_server


def test_the_s3_servers_logs_and_local_sockets_stay_in_its_data_directory(s3_server):
    port = s3_server.endpoint.rsplit(":", 1)[1]

    assert (s3_server.data_dir / "s3.sock").is_socket()
    assert (s3_server.data_dir / "filer.sock").is_socket()
    assert list(s3_server.data_dir.glob("weed.*.log.INFO.*"))
    assert not Path(f"/tmp/seaweedfs-s3-{port}.sock").exists()


def test_a_port_taken_before_weed_binds_it_is_retried_on_new_ports(
    tmp_path, monkeypatch
):
    # The race (another process takes a chosen port before weed binds it)
    # cannot be timed for real; a port held open here stands in for it.
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    taken = holder.getsockname()[1]
    choose = s3_server._ports
    calls = []

    def ports_first_taken(port):
        chosen = choose(port)
        if not calls:
            chosen["admin.port"] = taken
        calls.append(chosen)
        return chosen

    monkeypatch.setattr(s3_server, "_ports", ports_first_taken)
    try:
        server = s3_server.start(
            access_key="k" * 12, secret_key="s" * 24, data_dir=tmp_path / "weed"
        )
    finally:
        holder.close()
    try:
        assert len(calls) == 2
        assert server.process.poll() is None
    finally:
        server.stop()

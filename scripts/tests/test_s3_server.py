"""The suite's S3 server keeps its files in its own directory, not in /tmp."""

from pathlib import Path


def test_the_s3_servers_logs_and_local_sockets_stay_in_its_data_directory(s3_server):
    port = s3_server.endpoint.rsplit(":", 1)[1]

    assert (s3_server.data_dir / "s3.sock").is_socket()
    assert (s3_server.data_dir / "filer.sock").is_socket()
    assert list(s3_server.data_dir.glob("weed.*.log.INFO.*"))
    assert not Path(f"/tmp/seaweedfs-s3-{port}.sock").exists()

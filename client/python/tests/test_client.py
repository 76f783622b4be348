"""The client against the real gradlabd: experiments, sweeps, streams across a restart,
errors, tokens and TLS, models."""
import subprocess
import threading
import time

import grpc
import pytest

import gradlab_client
from gradlab_client import GradlabError, messages
from conftest import QUICK, Gradlabd


def test_start_wait_and_collect_the_epochs(client):
    run = client.start_experiment(QUICK, name="first", labels={"who": "pytest"})
    assert run.state == messages.QUEUED
    assert run.spec.batch_norm  # resolved: the mlp's default
    seen = []
    finished = client.wait(run.id, on_event=seen.append)
    assert finished.state == messages.SUCCEEDED
    assert any(event.HasField("epoch_metrics") for event in seen)

    rows = client.epochs(run.id)
    assert [row["epoch"] for row in rows] == [1, 2]
    assert rows[-1]["test_accuracy"] == finished.last_metrics.test_accuracy
    assert set(rows[0]) >= {"train_loss", "test_loss", "learning_rate", "images_per_second"}
    predictions = list(client.follow_predictions(run.id, follow=False))
    assert [p.epoch for p in predictions] == [0, 1, 2]
    assert sum(predictions[0].predicted_counts) == 64
    snapshots = list(client.follow_gradients(run.id, follow=False, layers="weight$"))
    assert snapshots[0].step == 1
    assert all(layer.name.endswith("weight") for layer in snapshots[0].layers)

    assert [e.id for e in client.list_experiments(state="SUCCEEDED")] == [run.id]
    assert client.list_experiments(state="RUNNING") == []
    client.delete_experiment(run.id)
    with pytest.raises(GradlabError) as gone:
        client.get_experiment(run.id)
    assert gone.value.code == grpc.StatusCode.NOT_FOUND


def test_a_dataframe_when_pandas_is_there(client):
    pandas = pytest.importorskip("pandas")
    run = client.start_experiment(**QUICK)
    client.wait(run.id)
    frame = client.epochs_frame([run.id])
    assert isinstance(frame, pandas.DataFrame)
    assert list(frame["epoch"]) == [1, 2]
    assert set(frame["experiment"]) == {run.id}


def test_errors_carry_the_code_and_the_servers_message(client):
    with pytest.raises(GradlabError) as bad_spec:
        client.start_experiment(QUICK, epochs=0)
    assert bad_spec.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "spec.epochs: 0 is out of range [1, 1000]" in bad_spec.value.message
    with pytest.raises(GradlabError) as unknown:
        client.cancel_experiment("nosuchid")
    assert unknown.value.code == grpc.StatusCode.NOT_FOUND
    with pytest.raises(ValueError, match="not an ExperimentSpec"):
        client.start_experiment(QUICK, no_such_field=1)
    with pytest.raises(GradlabError) as unreachable:
        gradlab_client.connect(f"127.0.0.1:{Gradlabd('/nonexistent').port}",
                               timeout=2).server_info()
    assert unreachable.value.code == grpc.StatusCode.UNAVAILABLE


def test_wait_times_out_and_cancel_stops_the_run(client):
    run = client.start_experiment(QUICK, epochs=1000)
    with pytest.raises(TimeoutError):
        client.wait(run.id, timeout=1)
    assert client.cancel_experiment(run.id).state == messages.CANCELLED
    assert client.wait(run.id, timeout=60).state == messages.CANCELLED


def test_following_across_a_server_restart_loses_and_repeats_nothing(gradlabd):
    client = gradlab_client.connect(gradlabd.address, reconnect_timeout=60)
    run = client.start_experiment(QUICK, epochs=6, max_train_samples=2048)
    followed, errors = [], []

    def follow():
        try:
            for event in client.follow_metrics(run.id):
                followed.append(event)
        except Exception as e:  # noqa: reported below, in the test's thread
            errors.append(e)

    follower = threading.Thread(target=follow)
    follower.start()
    deadline = time.monotonic() + 120
    while not any(e.HasField("epoch_metrics") for e in followed):
        assert follower.is_alive() and time.monotonic() < deadline, errors
        follower.join(0.05)
    gradlabd.kill()  # mid-run, while the stream is open
    gradlabd.start()
    follower.join(300)
    assert not follower.is_alive() and not errors, errors

    sequences = [event.sequence for event in followed]
    assert sequences == sorted(set(sequences)), "an event repeated or came out of order"
    stored = [event.sequence for event in client.follow_metrics(run.id, follow=False)]
    assert set(stored) <= set(sequences), "an event the server kept was skipped"
    assert client.get_experiment(run.id).state == messages.SUCCEEDED
    assert [row["epoch"] for row in client.epochs(run.id)] == [1, 2, 3, 4, 5, 6]


def test_a_sweep_from_keyword_arguments(client):
    sweep = client.start_sweep(QUICK, vary={"batch_norm": [False, True]}, seeds=2,
                               name="bn")
    assert len(sweep.cells) == 2
    done = client.wait_sweep(sweep.id, timeout=300)
    assert done.state == messages.SUCCEEDED
    assert [cell.runs_succeeded for cell in done.cells] == [2, 2]
    assert [s.id for s in client.list_sweeps()] == [sweep.id]
    with pytest.raises(ValueError, match="bools, numbers and strings"):
        client.start_sweep(QUICK, vary={"batch_norm": [None]})


def test_tokens_from_the_argument_or_the_environment(tmp_path, monkeypatch):
    tokens = tmp_path / "tokens"
    tokens.write_text("read-token-0123456789abcdef read\nwrite-token-0123456789abcdef write\n")
    server = Gradlabd(tmp_path / "state", [f"--auth_tokens_file={tokens}"]).start()
    try:
        with pytest.raises(GradlabError) as anonymous:
            gradlab_client.connect(server.address).list_experiments()
        assert anonymous.value.code == grpc.StatusCode.UNAUTHENTICATED
        reader = gradlab_client.connect(server.address, token="read-token-0123456789abcdef")
        assert reader.list_experiments() == []
        with pytest.raises(GradlabError) as denied:
            reader.start_experiment(QUICK)
        assert denied.value.code == grpc.StatusCode.PERMISSION_DENIED
        monkeypatch.setenv("GRADLAB_TOKEN", "write-token-0123456789abcdef")
        monkeypatch.setenv("GRADLAB_SERVER", server.address)
        writer = gradlab_client.connect()
        run = writer.start_experiment(QUICK)
        assert writer.wait(run.id).state == messages.SUCCEEDED
    finally:
        server.stop()


def test_tls_with_a_client_certificate(tmp_path):
    def openssl(*args):
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=tmp_path)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out",
            "ca.pem", "-days", "1", "-subj", "/CN=gradlab test CA")
    for name, subject in (("server", "/CN=localhost"), ("client", "/CN=pytest")):
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out",
                f"{name}.csr", "-subj", subject)
        (tmp_path / f"{name}.ext").write_text(
            "subjectAltName=DNS:localhost,IP:127.0.0.1\n" if name == "server" else "")
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                "-CAcreateserial", "-out", f"{name}.pem", "-days", "1", "-extfile",
                f"{name}.ext")
    server = Gradlabd(tmp_path / "state", [f"--tls_cert={tmp_path / 'server.pem'}",
                                           f"--tls_key={tmp_path / 'server.key'}",
                                           f"--tls_client_ca={tmp_path / 'ca.pem'}"]).start()
    try:
        secure = gradlab_client.connect(server.address, tls_ca=tmp_path / "ca.pem",
                                        tls_cert=tmp_path / "client.pem",
                                        tls_key=tmp_path / "client.key")
        assert secure.server_info().version
        with pytest.raises(GradlabError) as no_certificate:
            gradlab_client.connect(server.address, tls_ca=tmp_path / "ca.pem",
                                   timeout=5).server_info()
        assert no_certificate.value.code == grpc.StatusCode.UNAVAILABLE
        with pytest.raises(ValueError, match="go together"):
            gradlab_client.connect(server.address, tls_cert=tmp_path / "client.pem")
    finally:
        server.stop()

"""gradlab's Python client: start, follow and collect experiments and sweeps on a gradlabd
server, upload TorchScript models and export trained ones.

    import gradlab_client
    client = gradlab_client.connect()            # $GRADLAB_SERVER, $GRADLAB_TOKEN
    run = client.start_experiment(model="deep_cnn", dataset="fashion_mnist", epochs=3)
    for event in client.follow_metrics(run.id):  # reconnects; never repeats or skips
        ...
    rows = client.epochs(run.id)                 # one dict per epoch

Messages are the API's protobuf messages (proto/gradlab/v1/experiment_service.proto);
`gradlab_client.messages` is that module. Every failed call raises GradlabError with the
gRPC status code and the server's message.
"""
from gradlab_client.client import Client, connect
from gradlab_client.errors import GradlabError
from gradlab_client._proto.gradlab.v1 import experiment_service_pb2 as messages

__all__ = ["Client", "GradlabError", "connect", "messages"]

#!/usr/bin/python3
"""Checks deploy/k8s/gradlabd.yaml against the image and gradlabd (a ctest, label deploy).

No cluster runs here, so this checks what a cluster would find wrong only when the pods
misbehave: that the ConfigMaps' flags are gradlabd's flags and agree with the ports,
probes, volumes, Secrets and CPU requests, that the workers find the coordinator through
its Service, that the NetworkPolicies let the group's pods (and only them) reach each
other's Gloo ports and anyone the coordinator's served ports, and that the pods run as the
image's user with the image's entrypoint reading their ConfigMap. deploy/smoke-test runs the image with the
coordinator's flags.

Usage: check_manifests.py GRADLABD_BINARY   (run from the repository's root)
"""
import json
import os
import re
import subprocess
import sys
import unittest

import yaml

MANIFEST = "deploy/k8s/gradlabd.yaml"
DOCKERFILE = "deploy/Dockerfile"
GRADLABD = None  # set from argv


def parse_flags(text):
    """--name=value lines of a flagfile, '#' comments and blank lines skipped."""
    flags = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        match = re.fullmatch(r"--([a-z_]+)(?:=(.*))?", line)
        if not match:
            raise ValueError(f"not a --flag=value line: {line!r}")
        flags[match.group(1)] = match.group(2) if match.group(2) is not None else "true"
    return flags


def port_of(address):
    return int(address.rsplit(":", 1)[1])


def cpu_cores(quantity):
    quantity = str(quantity)
    return int(quantity[:-1]) / 1000 if quantity.endswith("m") else float(quantity)


def dockerfile_instruction(text, name):
    """The last argument string of an instruction in the runtime stage."""
    runtime = text.split("AS runtime", 1)[1]
    matches = re.findall(rf"^{name} (.+)$", runtime, flags=re.MULTILINE)
    if not matches:
        raise AssertionError(f"{DOCKERFILE}'s runtime stage has no {name}")
    return matches[-1]


class ManifestTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        with open(MANIFEST) as f:
            documents = [d for d in yaml.safe_load_all(f) if d]
        cls.named = {(d["kind"], d["metadata"]["name"]): d for d in documents}
        cls.services = [d for d in documents if d["kind"] == "Service"]
        cls.config_map = cls.named[("ConfigMap", "gradlabd-flags")]
        cls.flags = parse_flags(cls.config_map["data"]["gradlabd.flags"])
        cls.stateful_set = cls.named[("StatefulSet", "gradlabd")]
        cls.pod = cls.stateful_set["spec"]["template"]["spec"]
        (cls.container,) = cls.pod["containers"]
        cls.arg_flags = parse_flags("\n".join(cls.container.get("args", [])))
        cls.mounts = {m["name"]: m["mountPath"] for m in cls.container["volumeMounts"]}
        cls.volumes = {v["name"]: v for v in cls.pod["volumes"]}
        cls.container_ports = {p["name"]: p["containerPort"] for p in cls.container["ports"]}
        cls.worker_config_map = cls.named[("ConfigMap", "gradlab-worker-flags")]
        cls.worker_flags = parse_flags(cls.worker_config_map["data"]["gradlabd.flags"])
        cls.workers = cls.named[("StatefulSet", "gradlab-worker")]
        cls.worker_pod = cls.workers["spec"]["template"]["spec"]
        (cls.worker_container,) = cls.worker_pod["containers"]
        cls.worker_mounts = {m["name"]: m["mountPath"]
                             for m in cls.worker_container["volumeMounts"]}
        cls.worker_volumes = {v["name"]: v for v in cls.worker_pod["volumes"]}
        with open(DOCKERFILE) as f:
            cls.dockerfile = f.read()

    def test_flags_are_gradlabds(self):
        usage = subprocess.run([GRADLABD, "--helpfull"], capture_output=True, text=True)
        known = set(re.findall(r"-- *([a-z_]+) \(", usage.stdout + usage.stderr))
        self.assertIn("listen", known, "could not read gradlabd's flags from --helpfull")
        self.assertEqual(set(self.flags) - known, set(), "flags gradlabd does not have")
        self.assertEqual(set(self.worker_flags) - known, set(), "worker flags gradlabd lacks")
        self.assertEqual(set(self.arg_flags) - known, set(), "args gradlabd does not have")

    def test_ports_agree(self):
        grpc = port_of(self.flags["listen"])
        http = port_of(self.flags["http_listen"])
        self.assertEqual(self.container_ports, {"grpc": grpc, "http": http})
        for service in self.services:
            for port in service["spec"].get("ports", []):
                self.assertIn(port["targetPort"], self.container_ports, service["metadata"])
        exposed = {int(p) for p in dockerfile_instruction(self.dockerfile, "EXPOSE").split()}
        self.assertEqual(exposed, {grpc, http})

    def test_probes_use_the_grpc_health_service_on_the_grpc_port(self):
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            self.assertEqual(self.container[probe]["grpc"]["port"], port_of(self.flags["listen"]),
                             probe)

    def test_cpu_request_is_workers_times_threads_per_job(self):
        resources = self.container["resources"]
        training_cores = int(self.flags["workers"]) * int(self.flags["threads_per_job"])
        self.assertGreater(training_cores, 0, "--threads_per_job must be set, not 0 (all cores)")
        self.assertEqual(cpu_cores(resources["requests"]["cpu"]), training_cores)
        self.assertGreaterEqual(cpu_cores(resources["limits"]["cpu"]), training_cores)
        self.assertIn("memory", resources["limits"])

    def test_volumes_are_where_the_flags_point(self):
        self.assertEqual(self.mounts["state"], self.flags["state_dir"])
        self.assertEqual(
            [t["metadata"]["name"] for t in self.stateful_set["spec"]["volumeClaimTemplates"]],
            ["state"])
        self.assertEqual(self.mounts["data"], self.flags["data_dir"])
        self.assertEqual(os.path.dirname(self.flags["auth_tokens_file"]), self.mounts["tokens"])
        self.assertIn("secretName", self.volumes["tokens"]["secret"])
        # The image's volume is the same folder.
        self.assertIn(self.flags["state_dir"], dockerfile_instruction(self.dockerfile, "VOLUME"))

    def test_the_image_entrypoint_reads_the_config_map(self):
        entrypoint = json.loads(dockerfile_instruction(self.dockerfile, "ENTRYPOINT"))
        # args add to the entrypoint's flags: only those that need the pod's own values
        # ($(VAR), which a ConfigMap's file cannot expand), from variables it defines.
        env = {e["name"] for e in self.container.get("env", [])}
        for arg in self.container.get("args", []):
            variables = set(re.findall(r"\$\(([A-Z_]+)\)", arg))
            self.assertTrue(variables, f"{arg} belongs in the ConfigMap")
            self.assertLessEqual(variables, env, f"{arg} uses variables the pod does not set")
        self.assertEqual(set(self.arg_flags) & set(self.flags), set(), "flags given twice")
        flagfile = next(a.split("=", 1)[1] for a in entrypoint if a.startswith("--flagfile="))
        self.assertEqual(os.path.dirname(flagfile), self.mounts["flags"])
        self.assertIn(os.path.basename(flagfile), self.config_map["data"])
        self.assertEqual(self.volumes["flags"]["configMap"]["name"],
                         self.config_map["metadata"]["name"])

    def test_runs_as_the_images_user(self):
        uid = int(re.search(r"useradd .*--uid (\d+)", self.dockerfile).group(1))
        for pod in (self.pod, self.worker_pod):
            self.assertEqual(pod["securityContext"]["runAsUser"], uid)
            self.assertEqual(pod["securityContext"]["fsGroup"], uid, "to read its Secret")
            self.assertTrue(pod["securityContext"]["runAsNonRoot"])

    def test_workers_reach_the_coordinator_through_its_service(self):
        self.assertEqual(self.worker_flags["worker"], "true")
        host, port = self.worker_flags["coordinator"].rsplit(":", 1)
        service = self.named[("Service", host)]
        self.assertEqual(service["spec"]["selector"],
                         self.stateful_set["spec"]["selector"]["matchLabels"])
        by_target = {p["targetPort"]: p["port"] for p in service["spec"]["ports"]}
        self.assertEqual(by_target["grpc"], int(port))
        self.assertNotIn("advertise_address", self.flags)

    def test_network_policies_keep_gloo_within_the_group(self):
        coordinator = self.stateful_set["spec"]["template"]["metadata"]["labels"]
        worker = self.workers["spec"]["template"]["metadata"]["labels"]
        policies = {p["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/name"]: p["spec"]
                    for p in self.named.values() if p["kind"] == "NetworkPolicy"}
        self.assertEqual(set(policies), {coordinator["app.kubernetes.io/name"],
                                         worker["app.kubernetes.io/name"]})
        for spec in policies.values():
            self.assertEqual(spec["policyTypes"], ["Ingress"])

        def from_pods(rule):
            return [s["podSelector"]["matchLabels"] for s in rule.get("from", [])]

        # The coordinator: anyone on the ports gradlabd serves (and no other port), its
        # workers on any port.
        open_rules = [r for r in policies["gradlabd"]["ingress"] if "from" not in r]
        self.assertEqual(len(open_rules), 1)
        self.assertEqual({p["port"] for p in open_rules[0]["ports"]}, set(self.container_ports))
        group_rules = [r for r in policies["gradlabd"]["ingress"] if "from" in r]
        self.assertEqual([from_pods(r) for r in group_rules], [[worker]])
        self.assertTrue(all("ports" not in r for r in group_rules))
        # Workers serve nothing: only the coordinator and the other workers reach them.
        (worker_rule,) = policies["gradlab-worker"]["ingress"]
        self.assertEqual(sorted(map(str, from_pods(worker_rule))),
                         sorted(map(str, [coordinator, worker])))
        self.assertNotIn("ports", worker_rule)

    def test_workers_token_data_and_cpu(self):
        token_file = self.worker_flags["coordinator_token_file"]
        self.assertEqual(os.path.dirname(token_file), self.worker_mounts["token"])
        self.assertEqual(self.worker_volumes["token"]["secret"]["secretName"],
                         "gradlab-worker-token")
        self.assertEqual(self.worker_mounts["data"], self.worker_flags["data_dir"])
        self.assertEqual(self.worker_flags["data_dir"], self.flags["data_dir"],
                         "workers look for a dataset where the coordinator found it first")
        self.assertEqual(cpu_cores(self.worker_container["resources"]["requests"]["cpu"]),
                         int(self.worker_flags["threads_per_job"]))
        self.assertEqual(self.worker_flags["threads_per_job"], self.flags["threads_per_job"],
                         "ranks train with the coordinator's threads per job")
        entrypoint = json.loads(dockerfile_instruction(self.dockerfile, "ENTRYPOINT"))
        flagfile = next(a.split("=", 1)[1] for a in entrypoint if a.startswith("--flagfile="))
        self.assertNotIn("args", self.worker_container)
        self.assertEqual(os.path.dirname(flagfile), self.worker_mounts["flags"])
        self.assertEqual(self.worker_volumes["flags"]["configMap"]["name"],
                         self.worker_config_map["metadata"]["name"])
        self.assertEqual(self.workers["spec"]["serviceName"],
                         self.named[("Service", "gradlab-worker")]["metadata"]["name"])


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    GRADLABD = sys.argv.pop(1)
    unittest.main()

"""TLS on the ingest port: encrypted agents store, the wrong peers are refused in the handshake.

Issue 12, hole 7. Certificates are made here with the openssl CLI: a CA, a
second (wrong) CA, a server certificate for localhost/127.0.0.1, one for
another name, and client certificates from each CA. The real collector and
agent run on loopback:
- an agent with tls-ca (and its client certificate, mTLS required) stores batches;
- under tls-required, a plaintext agent is refused and counted;
- `openssl s_client` without a certificate, with one from the wrong CA, or
  offering only TLS 1.1 is refused in the handshake (counted as tls_failures);
  the TLS 1.1 case shows from s_client's own -msg trace that it offered 1.1;
- an agent refuses a collector whose certificate does not carry its name.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from harness import CLI, COLLECTOR, SANITIZER_MARKS, Cluster, wait_for  # noqa: E402


def openssl(*args: str, cwd: str) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_ca(d: str, name: str) -> None:
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", f"{name}.key", "-out", f"{name}.crt", "-days", "2", "-subj", f"/CN={name}",
            cwd=d)


def make_cert(d: str, ca: str, name: str, cn: str, san: str, usage: str) -> None:
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={cn}", cwd=d)
    with open(os.path.join(d, f"{name}.ext"), "w") as f:
        f.write(f"subjectAltName={san}\nextendedKeyUsage={usage}\n")
    openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.crt", "-CAkey", f"{ca}.key",
            "-CAcreateserial", "-out", f"{name}.crt", "-days", "2", "-extfile", f"{name}.ext",
            cwd=d)
    os.chmod(os.path.join(d, f"{name}.key"), 0o600)


class TlsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls) -> None:
        cls.c = Cluster()
        d = cls.pki = os.path.join(cls.c.dir, "pki")
        os.makedirs(d)
        make_ca(d, "ca")
        make_ca(d, "wrongca")
        make_cert(d, "ca", "server", "localhost", "DNS:localhost,IP:127.0.0.1", "serverAuth")
        make_cert(d, "ca", "other", "other.example", "DNS:other.example", "serverAuth")
        make_cert(d, "ca", "client", "agent-1", "DNS:agent-1", "clientAuth")
        make_cert(d, "wrongca", "stranger", "agent-1", "DNS:agent-1", "clientAuth")
        cls.c.start_collector("--tls-cert", cls.p("server.crt"), "--tls-key", cls.p("server.key"),
                              "--tls-ca", cls.p("ca.crt"), "--tls-required")

    @classmethod
    def tearDownClass(cls) -> None:
        cls.c.close()
        cls.c.cleanup()

    def tearDown(self) -> None:
        if any(self._outcome.result.failures) or any(self._outcome.result.errors):
            self.c.dump_logs()

    @classmethod
    def p(cls, name: str) -> str:
        return os.path.join(cls.pki, name)

    def ingest(self) -> dict:
        return self.c.get("/api/v1/status")["ingest"]

    def s_client(self, *args: str) -> subprocess.CompletedProcess:
        """Runs s_client against the ingest port, sending nothing, and returns its output.

        -ign_eof keeps it reading until the collector closes: a TLS 1.3 client finishes
        its side of the handshake before the server has judged its certificate, so the
        refusal arrives as an alert after that.
        """
        argv = ["openssl", "s_client", "-connect", f"127.0.0.1:{self.c.ingest_port}",
                "-CAfile", self.p("ca.crt"), "-verify_return_error", "-ign_eof", "-msg", *args]
        return subprocess.run(argv, input="", capture_output=True, text=True, timeout=30)

    def test_1_agent_over_tls_stores_batches(self) -> None:
        a = self.c.start_agent("--tls-ca", self.p("ca.crt"), "--tls-cert", self.p("client.crt"), "--probe-socket", "",
                               "--tls-key", self.p("client.key"), name="agent-tls")
        wait_for("batches acked over TLS", lambda: self.ingest()["acks"] >= 2, 30)
        st = self.ingest()
        self.assertGreaterEqual(st["tls_sessions"], 1)
        self.assertGreater(self.c.get("/api/v1/status")["store"]["samples"], 0)
        self.assertIn("connected to collector", a.output())
        self.assertIn("TLS on", self.c.collector.output())
        a.stop()

    def test_2_plaintext_agent_refused_under_tls_required(self) -> None:
        before = self.ingest()["plaintext_refused"]
        a = self.c.start_agent("--probe-socket", "", name="agent-plain")
        wait_for("plaintext refusal counted", lambda: self.ingest()["plaintext_refused"] > before,
                 20)
        wait_for("agent saw the refusal", lambda: "requires TLS" in a.output(), 10)
        a.stop()

    def assert_refused_in_handshake(self, r: subprocess.CompletedProcess, before: int) -> None:
        out = r.stdout + r.stderr
        wait_for("TLS failure counted", lambda: self.ingest()["tls_failures"] > before, 10)
        # The handshake ended in an alert (s_client prints it), never in a session used.
        self.assertRegex(out, r"alert|handshake failure|error", out)
        return None

    def test_3_client_without_certificate_refused(self) -> None:
        before = self.ingest()["tls_failures"]
        r = self.s_client()
        out = r.stdout + r.stderr
        print("--- s_client without a certificate ---\n" + out[-1500:])
        self.assert_refused_in_handshake(r, before)
        self.assertIn("certificate required", out)

    def test_4_client_certificate_from_wrong_ca_refused(self) -> None:
        before = self.ingest()["tls_failures"]
        r = self.s_client("-cert", self.p("stranger.crt"), "-key", self.p("stranger.key"))
        out = r.stdout + r.stderr
        print("--- s_client with a certificate from the wrong CA ---\n" + out[-1500:])
        self.assert_refused_in_handshake(r, before)
        self.assertRegex(out, r"unknown ca|bad certificate|certificate unknown")
        wait_for("collector logged the reason",
                 lambda: "unable to get local issuer certificate" in self.c.collector.output()
                 or "certificate verify failed" in self.c.collector.output(), 10)

    def test_5_client_offering_only_tls11_refused(self) -> None:
        before = self.ingest()["tls_failures"]
        r = self.s_client("-tls1_1", "-cipher", "DEFAULT:@SECLEVEL=0",
                          "-cert", self.p("client.crt"), "-key", self.p("client.key"))
        out = r.stdout + r.stderr
        print("--- s_client -tls1_1 ---\n" + out[-2000:])
        # s_client's -msg trace shows the ClientHello it sent: record and hello version 1.1.
        self.assertRegex(out, r">>> TLS 1\.1, Handshake \[length [0-9a-f]+\], ClientHello")
        self.assertNotIn("TLS 1.2, Handshake", out)
        self.assert_refused_in_handshake(r, before)
        self.assertRegex(out, r"protocol version|unsupported protocol")

    def test_6_agent_refuses_collector_with_wrong_name(self) -> None:
        other = Cluster()
        try:
            other.start_collector("--tls-cert", self.p("other.crt"), "--tls-key",
                                  self.p("other.key"))
            a = other.start_agent("--tls-ca", self.p("ca.crt"), "--probe-socket", "",
                                  name="agent-wrongname")
            wait_for("agent refused the certificate",
                     lambda: "hostname mismatch" in a.output()
                     or "IP address mismatch" in a.output(), 20)
            time.sleep(1.0)
            self.assertEqual(other.get("/api/v1/status")["ingest"]["acks"], 0)
            print("--- agent against other.example ---\n" + a.output()[-800:])
            # With the right name asked for, the same collector is accepted.
            b = other.start_agent("--tls-ca", self.p("ca.crt"), "--tls-server-name",
                                  "other.example", "--probe-socket", "", name="agent-rightname")
            wait_for("batches acked with tls-server-name",
                     lambda: other.get("/api/v1/status")["ingest"]["acks"] > 0, 30)
            b.stop()
            a.stop()
        except BaseException:
            other.dump_logs()
            raise
        finally:
            other.close()
            other.cleanup()

    def test_7_https_api(self) -> None:
        other = Cluster()
        try:
            argv = [COLLECTOR, "--foreground", "--data-dir", other.data_dir,
                    "--listen", f"127.0.0.1:{other.ingest_port}",
                    "--http", f"127.0.0.1:{other.http_port}", "--token-file", other.token_file,
                    "--tls-cert", self.p("server.crt"), "--tls-key", self.p("server.key"),
                    "--http-tls-cert", self.p("server.crt"), "--http-tls-key",
                    self.p("server.key"), "--tls-required", "--api-token-file",
                    self.p("api-token")]
            with open(self.p("api-token"), "w") as f:
                f.write("5d0c9e3f7a2b41e8b6a4c1d0e9f8a7b6\n")
            os.chmod(self.p("api-token"), 0o600)
            col = other.spawn("collector-https", argv)
            https = f"https://127.0.0.1:{other.http_port}"

            def cli(*args: str) -> subprocess.CompletedProcess:
                return subprocess.run([CLI, "--server", https, *args], capture_output=True,
                                      text=True, timeout=30)

            wait_for("HTTPS status", lambda: cli("--cacert", self.p("ca.crt"), "status")
                     .returncode == 0, 15)
            r = cli("--cacert", self.p("ca.crt"), "--json", "status")
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertIn("store", json.loads(r.stdout))
            # Several requests on one kept-alive TLS connection, answers larger than a record.
            r = subprocess.run(["curl", "-sS", "--cacert", self.p("ca.crt"),
                                f"{https}/api/v1/status", f"{https}/api/v1/hosts",
                                f"{https}/api/v1/status"], capture_output=True, text=True,
                               timeout=30)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertEqual(r.stdout.count('"store"'), 2)
            # Without the CA the CLI refuses the certificate.
            r = cli("status")
            self.assertEqual(r.returncode, 2, r.stderr)
            self.assertIn("certificate", r.stderr)
            # Plain HTTP is closed under tls-required, and counted.
            r = subprocess.run([CLI, "--server", f"http://127.0.0.1:{other.http_port}", "status"],
                               capture_output=True, text=True, timeout=30)
            self.assertEqual(r.returncode, 2, r.stderr)
            r = cli("--cacert", self.p("ca.crt"), "--json", "status")
            self.assertGreaterEqual(json.loads(r.stdout)["http"]["plaintext_refused"], 1)
            # A client offering only TLS 1.1 is refused by the HTTPS listener too.
            r = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{other.http_port}",
                                "-tls1_1", "-cipher", "DEFAULT:@SECLEVEL=0", "-msg"],
                               input="", capture_output=True, text=True, timeout=30)
            self.assertRegex(r.stdout, r">>> TLS 1\.1, Handshake \[length [0-9a-f]+\], ClientHello")
            self.assertIn("protocol version", r.stdout + r.stderr)
            # Write routes over HTTPS: the token still decides.
            r = cli("--cacert", self.p("ca.crt"), "ack", "999")
            self.assertIn("401", r.stderr + r.stdout)
            r = cli("--cacert", self.p("ca.crt"), "--token-file", self.p("api-token"), "ack",
                    "999")
            self.assertNotIn("401", r.stderr + r.stdout)
            self.assertIn("404", r.stderr + r.stdout)
            self.assertIn("HTTP API over TLS", col.output())
            col.stop()
            for mark in SANITIZER_MARKS:
                self.assertNotIn(mark, col.output())
        except BaseException:
            other.dump_logs()
            raise
        finally:
            other.close()
            other.cleanup()


if __name__ == "__main__":
    unittest.main(verbosity=2)

"""SMTP AUTH and required TLS, from the replicated policy, with swaks and
smtplib as clients."""
import smtplib
import ssl
import subprocess

from smtp_util import Raw, code_of, message


def swaks(port, *extra):
    return subprocess.run(
        ["swaks", "--server", "127.0.0.1", "--port", str(port), "--from",
         "s@example.com", "--to", "r@example.org", "--timeout", "20"]
        + list(extra), capture_output=True, text=True, timeout=60)


def apply_auth_policy(c):
    node = c.nodes[0]
    h = node.ctl_input(["password-hash"], "correct horse\n").stdout.strip()
    assert h.startswith("pbkdf2-sha256$")
    policy = {"customers": [{"name": "default",
                             "networks": ["127.0.0.1/32"],
                             "users": [{"name": "app1", "password": h}],
                             "require_auth": True,
                             "require_tls": True}]}
    st, res = node.api("POST", "/v1/policy", policy)
    assert st == 200, res
    c.wait_converged()


def test_auth_plain_and_login_after_starttls(make_cluster):
    c = make_cluster(n=3, tls=True).start()
    apply_auth_policy(c)
    for node in c.nodes:
        for mech in ("PLAIN", "LOGIN"):
            p = swaks(node.smtp_port, "--tls", "--auth", mech,
                      "--auth-user", "app1", "--auth-password",
                      "correct horse")
            assert p.returncode == 0, p.stdout + p.stderr
            assert "235 2.7.0" in p.stdout
            assert "250 2.0.0 OK" in p.stdout
        p = swaks(node.smtp_port, "--tls", "--auth", "PLAIN", "--auth-user",
                  "app1", "--auth-password", "wrong")
        assert p.returncode != 0
        assert "535 5.7.8" in p.stdout
        p = swaks(node.smtp_port, "--tls", "--auth", "PLAIN", "--auth-user",
                  "nobody", "--auth-password", "correct horse")
        assert "535 5.7.8" in p.stdout
    # the password never reaches logs or the replicated state
    for node in c.nodes:
        assert "correct horse" not in open(node.log_path).read()
        st, pol = node.api("GET", "/v1/policy")
        assert "correct horse" not in str(pol)


def test_no_auth_and_no_mail_before_tls(make_cluster):
    c = make_cluster(n=1, tls=True).start()
    apply_auth_policy(c)
    node = c.nodes[0]
    r = Raw(node.smtp_port)
    r.reply()
    r.send("EHLO t\r\n")
    code, lines = r.reply()
    assert not any("AUTH" in l for l in lines)       # not offered in clear
    assert any("STARTTLS" in l for l in lines)
    r.send("MAIL FROM:<a@b.c>\r\n")
    code, lines = r.reply()
    assert code == 530 and "STARTTLS" in lines[0]
    r.send("AUTH PLAIN AGFwcDEAY29ycmVjdCBob3JzZQ==\r\n")
    code, lines = r.reply()
    assert code in (503, 538)
    r.close()

    # after STARTTLS: AUTH offered; MAIL needs it
    s = smtplib.SMTP("127.0.0.1", node.smtp_port, timeout=30)
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    s.starttls(context=ctx)
    s.ehlo("t")
    assert "PLAIN" in s.esmtp_features.get("auth", "")
    code, _ = s.mail("a@b.c")
    assert code == 530
    s.rset()
    s.login("app1", "correct horse")
    s.mail("a@b.c")
    s.rcpt("r@example.org")
    code, text = s.data(message())
    assert code == 250
    code_of(text.decode())
    s.quit()

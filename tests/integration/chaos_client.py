"""Continuous injection for chaos tests: THREADS clients send to HOST:2525
for SECONDS seconds (reconnecting after any error, as a real client's queue
would retry) and print one JSON line: the codes that got a 250, the number
of DATA attempts and of 4xx answers. Run inside the client namespace."""
import json
import smtplib
import sys
import threading
import time

host, threads, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
lock = threading.Lock()
acked, stats = [], {"attempts": 0, "refused": 0, "errors": 0}
end = time.time() + seconds


def run(i):
    n = 0
    while time.time() < end:
        try:
            s = smtplib.SMTP(host, 2525, timeout=5)
            s.ehlo("chaos%d" % i)
            while time.time() < end:
                s.mail("c%d@example.com" % i)
                s.rcpt("r%d-%d@example.org" % (i, n))
                with lock:
                    stats["attempts"] += 1
                code, text = s.data("Subject: %d-%d\r\n\r\nchaos\r\n" % (i, n))
                n += 1
                with lock:
                    if code == 250:
                        acked.append(text.decode().split()[-1])
                    else:
                        stats["refused"] += 1
            s.quit()
        except (smtplib.SMTPException, OSError):
            with lock:
                stats["errors"] += 1
            time.sleep(0.05)


ts = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
for t in ts:
    t.start()
for t in ts:
    t.join()
print(json.dumps({"acked": acked, **stats}))

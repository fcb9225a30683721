# Opens N half-open HTTP requests (headers never finished) from this address, then checks
# /healthz from a fresh connection, and reads what the server did with them.
import socket, sys, time, resource, urllib.request
resource.setrlimit(resource.RLIMIT_NOFILE, (20000, 20000))
port, n, pid = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
rss = lambda: int([l for l in open(f"/proc/{pid}/status") if l.startswith("VmRSS")][0].split()[1]) // 1024
before = rss()
socks, refused, failed = [], 0, 0
for i in range(n):
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=2)
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        socks.append(s)
    except OSError:
        failed += 1
time.sleep(1)
for s in socks:
    s.setblocking(False)
    try:
        data = s.recv(64)
        if data.startswith(b"HTTP/1.1 503"): refused += 1
    except BlockingIOError:
        pass
    except OSError:
        pass
t = time.time()
try:
    ok = urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5).status
except Exception as e:
    ok = repr(e)
health_ms = int((time.time() - t) * 1000)
peak = rss()
time.sleep(12)  # past the header timeout
open_after = 0
for s in socks:
    try:
        s.setblocking(False)
        d = s.recv(64)
        if d == b"": continue
    except BlockingIOError:
        open_after += 1
    except OSError:
        pass
print({"attempted": n, "connect_failed": failed, "refused_503": refused, "healthz": ok, "healthz_ms": health_ms,
       "rss_mib_before": before, "rss_mib_with_them": peak, "still_open_after_12s": open_after, "rss_mib_after": rss()})

"""Self-check of scripts/wrk_output.py on sample wrk outputs.
Run: python3 -m unittest scripts/test_wrk_output.py   or   python3 scripts/test_wrk_output.py"""
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from wrk_output import problems, summary  # noqa: E402

CLEAN = """Running 10s test @ http://127.0.0.1:18181/health/live
  2 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.52ms  812.34us  21.07ms   85.12%
    Req/Sec    21.31k     1.90k   25.40k    71.50%
  Latency Distribution
     50%    1.37ms
     75%    1.82ms
     90%    2.43ms
     99%    4.51ms
  424113 requests in 10.00s, 53.39MB read
Requests/sec:  42405.21
Transfer/sec:      5.34MB
"""

ERRORS = """Running 15s test @ http://127.0.0.1:18383/
  2 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   110.20ms  301.44ms   2.00s    93.40%
    Req/Sec   512.33    140.21     0.90k    68.00%
  Latency Distribution
     50%   12.40ms
     75%   25.10ms
     90%  150.00ms
     99%    1.85s
  14534 requests in 15.02s, 9.87MB read
  Socket errors: connect 3, read 12, write 1, timeout 34
  Non-2xx or 3xx responses: 7
Requests/sec:    967.65
Transfer/sec:    672.91KB
"""


class WrkOutput(unittest.TestCase):
    def test_clean_run(self):
        w = summary(CLEAN)
        self.assertEqual(w["rps"], 42405.21)
        self.assertAlmostEqual(w["p50"], 1.37)
        self.assertAlmostEqual(w["p99"], 4.51)
        self.assertEqual(w["total"], 424113)
        self.assertEqual((w["non2xx"], w["connect"], w["read"], w["write"], w["timeout"], w["socket_errors"]), (0, 0, 0, 0, 0, 0))
        self.assertEqual(problems(w), "")

    def test_socket_errors_and_timeouts(self):
        w = summary(ERRORS)
        self.assertEqual(w["total"], 14534)
        self.assertAlmostEqual(w["p99"], 1850.0)
        self.assertEqual(w["non2xx"], 7)
        self.assertEqual((w["connect"], w["read"], w["write"], w["timeout"]), (3, 12, 1, 34))
        self.assertEqual(w["socket_errors"], 50)
        self.assertEqual(problems(w), "7 non-2xx or 3xx answers; 50 socket errors (connect 3, read 12, write 1, timeout 34)")

    def test_socket_errors_alone_are_a_problem(self):
        w = summary(CLEAN.replace("  424113 requests in 10.00s, 53.39MB read\n",
                                  "  424113 requests in 10.00s, 53.39MB read\n  Socket errors: connect 0, read 0, write 0, timeout 2\n"))
        self.assertEqual((w["non2xx"], w["timeout"], w["socket_errors"]), (0, 2, 2))
        self.assertIn("timeout 2", problems(w))

    def test_microseconds(self):
        w = summary(CLEAN.replace("     50%    1.37ms", "     50%  870.00us"))
        self.assertAlmostEqual(w["p50"], 0.87)


if __name__ == "__main__":
    unittest.main()

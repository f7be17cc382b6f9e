import sys

from lowimpact import monitoring

lines = []


def count(code, line):
    lines.append(line)


def work(n):
    total = 0
    for i in range(n):
        total += i
    return total


monitoring.use_tool_id(monitoring.COVERAGE_ID, "beside")
monitoring.register_callback(monitoring.COVERAGE_ID, monitoring.events.LINE, count)
monitoring.set_local_events(monitoring.COVERAGE_ID, work.__code__, monitoring.events.LINE)
result = work(3)
monitoring.set_local_events(monitoring.COVERAGE_ID, work.__code__, 0)
monitoring.free_tool_id(monitoring.COVERAGE_ID)
print("result", result, "lines", lines)

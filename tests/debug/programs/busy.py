from lowimpact import monitoring

monitoring.use_tool_id(monitoring.DEBUGGER_ID, "other debugger")
x = 1
breakpoint()
print("x", x)

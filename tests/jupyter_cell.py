# One cell in a new Jupyter kernel, driven over the REST API and the kernel's websocket:
#   python3 jupyter_cell.py PORT TOKEN CODE
# prints {"stdout": ..., "error": [...]} once the kernel is idle again, then shuts the kernel
# down. Used by tests/suite/g3_jupyter.rs and tests/container/run.sh.
import json, sys, uuid, urllib.request
import websocket
port, token, code = int(sys.argv[1]), sys.argv[2], sys.argv[3]
def api(method, path, body=None):
    req = urllib.request.Request("http://127.0.0.1:%d%s" % (port, path), method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": "token " + token, "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as r:
        return json.loads(r.read() or b"null")
kernel = api("POST", "/api/kernels", {"name": "python3"})
ws = websocket.create_connection("ws://127.0.0.1:%d/api/kernels/%s/channels" % (port, kernel["id"]),
    header=["Authorization: token " + token], timeout=60)
msg_id = uuid.uuid4().hex
ws.send(json.dumps({"header": {"msg_id": msg_id, "msg_type": "execute_request", "username": "test",
    "session": uuid.uuid4().hex, "version": "5.3"}, "parent_header": {}, "metadata": {},
    "content": {"code": code, "silent": False, "store_history": False, "user_expressions": {},
    "allow_stdin": False, "stop_on_error": True}, "channel": "shell"}))
out, err = [], []
while True:
    m = json.loads(ws.recv())
    if m.get("parent_header", {}).get("msg_id") != msg_id:
        continue
    t = m["msg_type"]
    if t == "stream":
        out.append(m["content"]["text"])
    elif t == "execute_result":
        out.append(m["content"]["data"].get("text/plain", ""))
    elif t == "error":
        err.append(m["content"]["ename"] + ": " + m["content"]["evalue"])
    elif t == "status" and m["content"]["execution_state"] == "idle":
        break
ws.close()
api("DELETE", "/api/kernels/" + kernel["id"])
print(json.dumps({"stdout": "".join(out), "error": err}))

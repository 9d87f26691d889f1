"""A tiny HTTP/1.1 server for the scenarios, run inside a topology host.

    python httpd.py NAME ADDR PORT [PORT ...]

Answers every GET with JSON {"server": NAME, "peer": client address, "port":
client port, "local": address:port it was reached on, "path": the path};
keep-alive works (HTTP/1.1 with Content-Length).  Prints "ready" once every
socket listens.
"""
import json
import socket
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        local = self.connection.getsockname()
        body = json.dumps({"server": self.server.name, "peer": self.client_address[0],
                           "port": self.client_address[1],
                           "local": f"{local[0]}:{local[1]}", "path": self.path}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

    def address_string(self):       # no reverse DNS either
        return self.client_address[0]


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def __init__(self, addr, name):
        if ":" in addr[0]:
            self.address_family = socket.AF_INET6
        self.name = name
        super().__init__(addr, Handler)

    def server_bind(self):
        # HTTPServer.server_bind would call getfqdn(): a DNS lookup that hangs in a
        # namespace without a resolver
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.socket.bind(self.server_address)
        self.server_address = self.socket.getsockname()
        self.server_name, self.server_port = self.server_address[:2]


def main():
    name, addr, ports = sys.argv[1], sys.argv[2], [int(p) for p in sys.argv[3:]]
    servers = [Server((addr, p), name) for p in ports]
    for s in servers[1:]:
        threading.Thread(target=s.serve_forever, daemon=True).start()
    print("ready", flush=True)
    servers[0].serve_forever()


if __name__ == "__main__":
    main()

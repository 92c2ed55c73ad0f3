"""The ``serve --workers N`` supervisor's sockets (plugin_api/http/workers.py)."""

from __future__ import annotations

import asyncio
import socket

import pytest

from plugin_api.http.workers import check_port_free, listening_socket, thread_share


def test_accepted_connections_have_tcp_nodelay() -> None:
    """Bug: the workers' sockets said protocol 0, so asyncio did not set TCP_NODELAY on the
    connections they accepted, and each response waited ~40 ms for a delayed ACK."""

    async def main() -> int:
        sock = listening_socket("127.0.0.1", 0, reuse_port=True)
        got: asyncio.Future[int] = asyncio.get_running_loop().create_future()

        async def accepted(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            s = writer.get_extra_info("socket")
            got.set_result(s.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            writer.close()

        server = await asyncio.start_server(accepted, sock=sock)
        _, writer = await asyncio.open_connection(*sock.getsockname()[:2])
        try:
            return await asyncio.wait_for(got, 10)
        finally:
            writer.close()
            server.close()
            await server.wait_closed()

    assert asyncio.run(main()) != 0


def test_workers_share_a_port_and_a_port_in_use_is_refused() -> None:
    first = listening_socket("127.0.0.1", 0, reuse_port=True)
    port = first.getsockname()[1]
    second = listening_socket("127.0.0.1", port, reuse_port=True)  # the next worker: the same port
    first.listen()
    second.listen()
    try:
        with pytest.raises(OSError):
            check_port_free("127.0.0.1", port)
    finally:
        first.close()
        second.close()
    check_port_free("127.0.0.1", port)  # free again


def test_each_worker_gets_its_share_of_the_cores() -> None:
    assert [thread_share(w, 2) for w in (1, 2, 3)] == [2, 1, 1]
    assert thread_share(2, 16) == 8

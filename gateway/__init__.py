"""The gateway: everything that touches files, sockets, the store and the terminal."""

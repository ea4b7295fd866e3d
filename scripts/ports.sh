# Ports on this machine, for the scripts that start their own servers (sourced).

free_port() { # → a TCP port nothing listens on now (the kernel's choice of an ephemeral one)
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

port_free() { # host port → status 0 when nothing listens there
  ! (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null
}

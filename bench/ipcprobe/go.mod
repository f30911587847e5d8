module caddy-wsgi/bench/ipcprobe

go 1.22

"""What tests and benchmarks start for themselves: private MariaDB servers on free ports
(`mariadb`: binlog on, ROW format, FULL row image, a server id each; never the machine's
shared server on 3306) and the ports (`ports`). Development only: not installed with
dmray, imported from the checkout (pytest's pythonpath, bench's sys.path)."""

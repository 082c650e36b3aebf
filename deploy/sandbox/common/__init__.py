"""What the exchange sandboxes (deploy/sandbox/htx/, bybit/, okx/) share: the generic bookkeeping (faults, rate-limit
windows, placed orders, request counts, egress routes), the refusal type, caller-IP rules, the admin API's generic
handlers and its client, the request pipeline's counting, and the program's command line. Nothing here knows an
exchange; each exchange's own words live in its package."""

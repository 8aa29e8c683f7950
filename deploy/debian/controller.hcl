# kumoi-controller.service reads this file (kumoi agent -config).
# Every kumoi agent flag can be set here under its name with _ for -;
# check a change with: kumoi agent -config /etc/kumoi/controller.hcl -validate
# (docs/operations.md, "Configuration file").
#
# As installed: a single-controller cloud on this machine, ACLs on, with
# the first management token's secret in /etc/kumoi/kumoi.env. For three
# controllers: give each its node_id and address, bootstrap_expect = 3 and
# the others' gossip addresses in join, and TLS (docs/tls.md).

controller       = true
node_id          = "c1"
data_dir         = "/var/lib/kumoi"
bind             = "127.0.0.1"
bootstrap_expect = 1
# join           = ["10.0.0.2:7402", "10.0.0.3:7402"]

acl {
  enabled = true
}

# tls {
#   ca   = "/etc/kumoi/tls/ca.pem"
#   cert = "/etc/kumoi/tls/c1.pem"
#   key  = "/etc/kumoi/tls/c1-key.pem"
# }

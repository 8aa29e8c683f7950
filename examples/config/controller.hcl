# A controller of a 3-controller cluster: kumoi agent -config /etc/kumoi/controller.hcl
# Every kumoi agent flag can be set here under its name with _ for -;
# flags and environment variables override the file. Check it with
#   kumoi agent -config /etc/kumoi/controller.hcl -validate
# Secrets stay out of the file: KUMOI_ACL_INITIAL_MANAGEMENT, KUMOI_TOKEN
# and KUMOI_GOSSIP_KEY in the service's environment (or env("NAME") here).

controller       = true
node_id          = "c1"
data_dir         = "/var/lib/kumoi"
bind             = "10.0.0.1"
bootstrap_expect = 3
join             = ["10.0.0.2:7402", "10.0.0.3:7402"]

log_level = "info"

tls {
  ca   = "/etc/kumoi/tls/ca.pem"
  cert = "/etc/kumoi/tls/c1.pem"
  key  = "/etc/kumoi/tls/c1-key.pem"
}

acl {
  enabled = true
}

# How long a host stays down before its ha=restart VMs are restarted
# elsewhere; it must exceed the workers' fence_after (docs/ha.md).
host_down_grace    = "3.5s"
placement_strategy = "spread"

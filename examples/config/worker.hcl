# A worker (one per hypervisor host): kumoi agent -config /etc/kumoi/worker.hcl
# Its node token comes from the environment: KUMOI_TOKEN (kumoi acl token
# create --type node --node hv1), and the gossip key from KUMOI_GOSSIP_KEY.

worker      = true
node_id     = "hv1"
data_dir    = "/var/lib/kumoi-worker"
bind        = "10.0.0.11"
join        = ["10.0.0.1:7402", "10.0.0.2:7402", "10.0.0.3:7402"]
hypervisor  = "libvirt"
libvirt_uri = "qemu:///system"
label       = ["rack=r1", "zone=a"]

# The fence guard stops this host's domains when nobody can prove the
# controllers still count it as ready for this long (docs/ha.md).
fence_after = "2.5s"

storage_dir = "/var/lib/kumoi/storage"

image {
  dir      = "/var/lib/kumoi/images"
  max_size = "64GiB"
}

tls {
  ca   = "/etc/kumoi/tls/ca.pem"
  cert = "/etc/kumoi/tls/hv1.pem"
  key  = "/etc/kumoi/tls/hv1-key.pem"
}

# kumoi-worker.service reads this file (kumoi agent -config); check a
# change with: kumoi agent -config /etc/kumoi/worker.hcl -validate
#
# As installed: the worker of this machine (its name: the hostname), next to
# the controller of /etc/kumoi/controller.hcl, on libvirt's qemu:///system,
# guarded by kumoi-fence-guard.service. On a hypervisor host of its own: set
# bind to its address and join to the controllers' gossip addresses.

worker      = true
data_dir    = "/var/lib/kumoi-worker"
bind        = "127.0.0.1"
gossip_port = 7403
join        = ["127.0.0.1:7402"]

hypervisor  = "libvirt"
libvirt_uri = "qemu:///system"
storage_dir = "/var/lib/kumoi-worker/storage"
image_dir   = "/var/lib/kumoi-worker/images"

# The fence guard runs as its own service (kumoi-fence-guard.service).
fence_guard = "external"

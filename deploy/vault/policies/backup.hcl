# backup: `hash7-admin backup-every` (deploy/admin/vault_backup.py), the scheduled raft snapshot of docker-compose.yml's
# vault-backup service. It reads the snapshot and nothing else: no binding, no key, no record, no policy. The snapshot
# is encrypted with Vault's barrier, so it opens only with this Vault's unseal key (or its auto-unseal KMS key).
path "sys/storage/raft/snapshot" {
  capabilities = ["read"]
}

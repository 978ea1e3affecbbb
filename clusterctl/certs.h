/*
 * certs.h - the cluster's CA and node certificates (OpenSSL), for mutual
 * TLS between nodes: `clusterctl ca create DIR` and `clusterctl cert create
 * DIR ID`. Node N's certificate has CN and DNS name "nodeN", so a peer is
 * verified by its node id; keys are EC P-256, written 0600.
 */
#ifndef SR_CLUSTERCTL_CERTS_H
#define SR_CLUSTERCTL_CERTS_H

#include <stddef.h>

/* Writes DIR/ca.pem and DIR/ca.key (refuses to overwrite). */
int certs_ca_create(const char *dir, char *err, size_t errlen);
/* Writes DIR/nodeID.pem and DIR/nodeID.key signed by DIR/ca.*. */
int certs_node_create(const char *dir, unsigned long id, char *err,
                      size_t errlen);

#endif

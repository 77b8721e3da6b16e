/* SPDX-License-Identifier: Apache-2.0 */
/* A dead node's sessions (docs/architecture.md, "Wills and dead nodes"):
 * worker 0 of every cluster node looks for a dead node instance once a
 * second; the one survivor that locks it publishes the wills of its
 * clients (honouring Will Delay) and gives its sessions their expiry. */
#ifndef SHOAL_NODE_DEAD_NODE_H
#define SHOAL_NODE_DEAD_NODE_H

#include "node/worker.h"

void dead_node_worker_init(worker *w);
void dead_node_worker_free(worker *w);

#endif

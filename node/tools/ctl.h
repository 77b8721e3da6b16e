/* SPDX-License-Identifier: Apache-2.0 */
/* `shoal ctl`: the admin client. Talks to a node's HTTP API (/api/v1) and
 * prints human-readable tables, or the API's JSON with --json. */
#ifndef SHOAL_NODE_CTL_H
#define SHOAL_NODE_CTL_H

/* argv[0] is "ctl". Returns the process exit code: 0 ok, 1 HTTP or API
 * error (message on stderr), 2 usage error. Blocks on the network. */
int ctl_main(int argc, char **argv);

#endif

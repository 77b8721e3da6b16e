/* SPDX-License-Identifier: Apache-2.0 */
/* Success or failure, for functions whose callers do not branch on why
 * (like Redis's C_OK/C_ERR). Functions that answer a client return an MQTT
 * reason code instead; callers that branch on the reason get a named enum. */
#ifndef SHOAL_COMMON_STATUS_H
#define SHOAL_COMMON_STATUS_H

#define SH_OK 0
#define SH_ERR (-1)

#endif

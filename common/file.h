/* SPDX-License-Identifier: Apache-2.0 */
/* Reading a whole (small) file: the password file, the ACL. */
#ifndef SHOAL_COMMON_FILE_H
#define SHOAL_COMMON_FILE_H

/* The file's bytes and a terminating NUL, owned: free with sh_free_str.
 * NULL with errno set if it cannot be read. A NUL byte inside the file ends
 * the text there. */
char *sh_read_file(const char *path);

#endif

#ifndef APM_CLI_CMD_BACKUP_H
#define APM_CLI_CMD_BACKUP_H

/*
 * apm-cli backup DIR: asks the running collector for an online backup of its
 * store into DIR (an absolute path on the collector's host, absent or empty)
 * through POST /api/v1/backup, waits for it without a time limit, and prints
 * its size, duration and newest sample.
 */
#include "cli/args.h"

int apm_cli_cmd_backup(const struct apm_cli_globals *g, int argc, char **argv);

#endif

/* Keeps each program library non-empty while its modules are added. */
typedef int apm_empty_translation_unit;

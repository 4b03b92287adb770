/* Translation markers: every user-visible message goes through _(). */
#pragma once

#include <libintl.h>

#ifndef HO_GETTEXT_PACKAGE
# define HO_GETTEXT_PACKAGE "handover"
#endif

#define _(msgid) dgettext(HO_GETTEXT_PACKAGE, msgid)
#define N_(msgid) msgid

/* Bind the message catalogue; programs call this once from main(). */
void ho_i18n_init(void);

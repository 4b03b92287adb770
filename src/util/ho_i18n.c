#include "ho_i18n.h"

#include <locale.h>

#ifndef HO_LOCALEDIR
# define HO_LOCALEDIR "/usr/local/share/locale"
#endif

void
ho_i18n_init(void)
{
    (void)setlocale(LC_ALL, "");
    (void)bindtextdomain(HO_GETTEXT_PACKAGE, HO_LOCALEDIR);
    (void)bind_textdomain_codeset(HO_GETTEXT_PACKAGE, "UTF-8");
}

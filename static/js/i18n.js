// The page's words in the reader's language, from Django's JavaScript catalog (/jsi18n/,
// a classic script the base template loads before any module). Every string a person
// sees is written as _("...") or ngettext("...", "...", n) with literal text, so
// `manage.py makemessages -d djangojs` finds it; fmt() then fills in named placeholders:
//   fmt(_("%(model)s: %(reason)s"), { model, reason })
export const _ = (text) => window.gettext(text);
export const ngettext = (singular, plural, count) => window.ngettext(singular, plural, count);
export const fmt = (text, values) => window.interpolate(text, values, true);

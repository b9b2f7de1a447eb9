/*-------------------------------------------------------------------------
 * phone.c
 *	  Phone numbers: normalisation of what shops store ("(11) 98765-4321",
 *	  "011 98765-4321", "(0xx11) 98765-4321", "+55 11 98765-4321",
 *	  "5511987654321", foreign
 *	  numbers with "+" or "00") to E.164 digits without the plus, and the
 *	  blacklist key that treats a Brazilian mobile with and without its
 *	  ninth digit as one number (WhatsApp ids often lack it).
 *
 *	  SQL: wa_notify.normalize_phone(text, text), wa_notify.phone_key(text).
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <ctype.h>
#include <string.h>

#include "fmgr.h"
#include "utils/builtins.h"

#include "wa_notify.h"

/* Brazilian national significant number after "55": DDD + subscriber. */
static bool
br_valid(const char *nsn, const char **error)
{
	size_t		len = strlen(nsn);

	if (len != 10 && len != 11)
	{
		*error = "a Brazilian number needs a two-digit area code and an 8- or 9-digit subscriber number";
		return false;
	}
	if (nsn[0] == '0' || nsn[1] == '0')
	{
		*error = "Brazilian area codes (DDD) are 11 to 99 and contain no zero";
		return false;
	}
	if (len == 11 && nsn[2] != '9')
	{
		*error = "a 9-digit Brazilian mobile number must start with 9";
		return false;
	}
	if (len == 10 && (nsn[2] < '2'))
	{
		*error = "an 8-digit Brazilian subscriber number must start with 2 to 9";
		return false;
	}
	return true;
}

/*
 * Normalise input to E.164 digits (no '+').  default_cc is the country code
 * applied to national numbers (digits, e.g. "55").  On failure returns false
 * and sets *error to a sentence-free fragment suitable for an errdetail.
 */
bool
wa_phone_normalize(const char *input, const char *default_cc,
				   char *out, size_t outlen, const char **error)
{
	char		digits[64];
	size_t		nd = 0;
	bool		international = false;
	const char *p = input;
	const char *cc = (default_cc && *default_cc) ? default_cc : "55";
	char		full[64];

	*error = NULL;
	if (input == NULL)
	{
		*error = "the phone number is empty";
		return false;
	}
	while (*p && isspace((unsigned char) *p))
		p++;
	if (*p == '+')
	{
		international = true;
		p++;
	}
	for (; *p; p++)
	{
		unsigned char c = (unsigned char) *p;

		if (isdigit(c))
		{
			if (nd >= sizeof(digits) - 1)
			{
				*error = "the phone number has too many digits";
				return false;
			}
			digits[nd++] = (char) c;
		}
		else if (c == ' ' || c == '-' || c == '(' || c == ')' || c == '.' ||
				 c == '/' || c == '\t')
			continue;
		else if ((c == 'x' || c == 'X') && nd == 1 && digits[0] == '0')
			continue;			/* "0xx11": the old "any carrier" trunk notation */
		else
		{
			*error = "the phone number contains characters other than digits, spaces, dashes, dots and parentheses";
			return false;
		}
	}
	digits[nd] = '\0';
	if (nd == 0)
	{
		*error = "the phone number is empty";
		return false;
	}

	if (!international && nd > 2 && digits[0] == '0' && digits[1] == '0')
	{
		/* "00" international call prefix */
		international = true;
		memmove(digits, digits + 2, nd - 1);
		nd -= 2;
	}

	if (international)
		strlcpy(full, digits, sizeof(full));
	else if (strcmp(cc, "55") == 0)
	{
		const char *d = digits;
		size_t		n = nd;

		/* national trunk prefix 0, optionally followed by a carrier code */
		if (d[0] == '0')
		{
			d++;
			n--;
			if (n == 12 || n == 13)
			{
				d += 2;			/* 0 + 2-digit carrier selection code */
				n -= 2;
			}
		}
		else if ((n == 12 || n == 13) && strncmp(d, "55", 2) == 0)
		{
			/* already carries the country code */
			d += 2;
			n -= 2;
		}
		if (n == 8 || n == 9)
		{
			*error = "the phone number has no area code (DDD)";
			return false;
		}
		snprintf(full, sizeof(full), "55%s", d);
	}
	else
	{
		const char *d = digits;
		size_t		ccl = strlen(cc);

		if (d[0] == '0')
			d++;				/* national trunk prefix */
		else if (nd > ccl + 6 && strncmp(d, cc, ccl) == 0)
			d += ccl;			/* already carries the country code */
		snprintf(full, sizeof(full), "%s%s", cc, d);
	}

	if (full[0] == '0')
	{
		*error = "a country code cannot start with 0";
		return false;
	}
	if (strlen(full) < 8 || strlen(full) > 15)
	{
		*error = "an E.164 number has 8 to 15 digits including the country code";
		return false;
	}
	if (strncmp(full, "55", 2) == 0 && !br_valid(full + 2, error))
		return false;
	if (strlen(full) + 1 > outlen)
	{
		*error = "the phone number is too long";
		return false;
	}
	strlcpy(out, full, outlen);
	return true;
}

/*
 * Blacklist key: a Brazilian mobile "55 DD 9XXXXXXXX" and its WhatsApp id
 * "55 DD XXXXXXXX" share the key "55 DD XXXXXXXX"; any other number is its
 * own key.
 */
void
wa_phone_key(const char *e164, char *out, size_t outlen)
{
	size_t		len = strlen(e164);

	if (len == 13 && strncmp(e164, "55", 2) == 0 && e164[4] == '9')
		snprintf(out, outlen, "%.4s%s", e164, e164 + 5);
	else
		strlcpy(out, e164, outlen);
}

PG_FUNCTION_INFO_V1(wa_notify_normalize_phone);
Datum
wa_notify_normalize_phone(PG_FUNCTION_ARGS)
{
	char	   *in;
	char	   *cc = NULL;
	char		out[WA_PHONE_MAXLEN];
	const char *error;

	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();
	in = text_to_cstring(PG_GETARG_TEXT_PP(0));
	if (PG_NARGS() > 1 && !PG_ARGISNULL(1))
		cc = text_to_cstring(PG_GETARG_TEXT_PP(1));
	if (!wa_phone_normalize(in, cc, out, sizeof(out), &error))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid phone number \"%s\"", in),
				 errdetail("%c%s.", pg_toupper((unsigned char) error[0]), error + 1),
				 errhint("Give a number with area code, such as \"(11) 98765-4321\", or an international number starting with \"+\".")));
	PG_RETURN_TEXT_P(cstring_to_text(out));
}

/* wa_notify._phone_e164(): normalize_phone()'s number, NULL where it would raise (_claim: no subtransaction per message) */
PG_FUNCTION_INFO_V1(wa_notify_phone_e164);
Datum
wa_notify_phone_e164(PG_FUNCTION_ARGS)
{
	char	   *cc = NULL;
	char		out[WA_PHONE_MAXLEN];
	const char *error;

	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();
	if (!PG_ARGISNULL(1))
		cc = text_to_cstring(PG_GETARG_TEXT_PP(1));
	if (!wa_phone_normalize(text_to_cstring(PG_GETARG_TEXT_PP(0)), cc, out, sizeof(out), &error))
		PG_RETURN_NULL();
	PG_RETURN_TEXT_P(cstring_to_text(out));
}

PG_FUNCTION_INFO_V1(wa_notify_phone_key);
Datum
wa_notify_phone_key(PG_FUNCTION_ARGS)
{
	char	   *in = text_to_cstring(PG_GETARG_TEXT_PP(0));
	char		out[64];

	wa_phone_key(in, out, sizeof(out));
	PG_RETURN_TEXT_P(cstring_to_text(out));
}

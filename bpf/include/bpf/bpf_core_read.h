/* SPDX-License-Identifier: Apache-2.0 */
/*
 * nfpipe's bpf_core_read.h: the CO-RE (compile once, run everywhere) macros of
 * libbpf's <bpf/bpf_core_read.h>, under the same names and with the same
 * meaning, so libbpf-style programs that use them compile unchanged.
 *
 *   bpf_core_read(dst, sz, src)  bpf_core_read_str  bpf_core_read_user[_str]
 *   BPF_CORE_READ(src, a, b, ...)     src->a->b->... read with relocatable offsets
 *   BPF_CORE_READ_INTO / _STR_INTO / _USER / _USER_INTO / _USER_STR_INTO
 *   BPF_PROBE_READ[_INTO|_STR_INTO|_USER|_USER_INTO|_USER_STR_INTO]   the same, no CO-RE
 *   BPF_CORE_READ_BITFIELD[_PROBED]  BPF_CORE_WRITE_BITFIELD
 *   bpf_core_field_exists/size/offset(p->f)   or (struct type, f)
 *   bpf_core_type_exists/size/matches(type)   bpf_core_type_id_local/kernel(type)
 *   bpf_core_enum_value_exists/bpf_core_enum_value(enum type, ENUMERATOR)
 *   bpf_core_cast(ptr, type)
 *
 * Each is a thin layer over clang's BPF builtins (__builtin_preserve_access_index,
 * __builtin_preserve_field_info, __builtin_preserve_type_info,
 * __builtin_preserve_enum_value, __builtin_btf_type_id): the compiler records a
 * CO-RE relocation in .BTF.ext and the loader patches offsets and sizes to the
 * running kernel's BTF.  nfpipe's loader does not do that: it refuses objects
 * with CO-RE relocations, naming program and instruction.  The header lets such
 * programs compile (to check them, or to load them with another loader).
 *
 * The field-reference forms follow libbpf's GCC spellings too (GCC needs the
 * address of the field and an extern for typeof), untested here: nfpipe's CI
 * builds with clang.
 */
#ifndef __BPF_CORE_READ__
#define __BPF_CORE_READ__

#include "bpf_helpers.h"

/* The second argument of the builtins.  The values are the compiler's ABI:
 * clang and GCC encode them in the relocation records. */
enum bpf_field_info_kind {
	BPF_FIELD_BYTE_OFFSET = 0, /* byte offset of the field */
	BPF_FIELD_BYTE_SIZE = 1,   /* byte size of the field's storage */
	BPF_FIELD_EXISTS = 2,      /* 1 if the running kernel has the field */
	BPF_FIELD_SIGNED = 3,      /* 1 if the field is a signed integer */
	BPF_FIELD_LSHIFT_U64 = 4,  /* shifts that extract a bitfield from a u64 */
	BPF_FIELD_RSHIFT_U64 = 5,
};

enum bpf_type_id_kind {
	BPF_TYPE_ID_LOCAL = 0,  /* the type's id in the program's own BTF */
	BPF_TYPE_ID_TARGET = 1, /* the id of the matching kernel type (0: none) */
};

enum bpf_type_info_kind {
	BPF_TYPE_EXISTS = 0,  /* 1 if the kernel has a compatible type */
	BPF_TYPE_SIZE = 1,    /* its size in the kernel */
	BPF_TYPE_MATCHES = 2, /* 1 if it matches field by field */
};

enum bpf_enum_value_kind {
	BPF_ENUMVAL_EXISTS = 0, /* 1 if the kernel's enum has the enumerator */
	BPF_ENUMVAL_VALUE = 1,  /* its value in the kernel */
};

/* ---- counting and chaining macro arguments ----------------------------------
 * ___nf_narg(...) and ___nf_cat() come from bpf_helpers.h.
 * ___nf_arrowN(s, a, b, ...) is s->a->b->...; it names the type at each step of
 * a pointer chain.
 */
#define ___nf_arrow1(s) s
#define ___nf_arrow2(s, a) s->a
#define ___nf_arrow3(s, a, b) s->a->b
#define ___nf_arrow4(s, a, b, c) s->a->b->c
#define ___nf_arrow5(s, a, b, c, d) s->a->b->c->d
#define ___nf_arrow6(s, a, b, c, d, e) s->a->b->c->d->e
#define ___nf_arrow7(s, a, b, c, d, e, f) s->a->b->c->d->e->f
#define ___nf_arrow8(s, a, b, c, d, e, f, g) s->a->b->c->d->e->f->g
#define ___nf_arrow9(s, a, b, c, d, e, f, g, h) s->a->b->c->d->e->f->g->h
#define ___nf_arrow10(s, a, b, c, d, e, f, g, h, i) s->a->b->c->d->e->f->g->h->i
#define ___nf_arrow(...) ___nf_cat(___nf_arrow, ___nf_narg(__VA_ARGS__))(__VA_ARGS__)

/* The type of s->a->...: without qualifiers where the compiler can drop them,
 * so the BPF_CORE_READ() result variable of a const field is assignable. */
#if (defined(__clang__) && __clang_major__ >= 19) || \
        (!defined(__clang__) && defined(__GNUC__) && __GNUC__ >= 14)
#define ___nf_type(...) __typeof_unqual__(___nf_arrow(__VA_ARGS__))
#else
#define ___nf_type(...) typeof(___nf_arrow(__VA_ARGS__))
#endif

/* ---- field and type references ---------------------------------------------
 * clang takes the field expression itself and a null pointer of the type;
 * GCC folds those too early, so it gets the field's address and an extern. */
#ifdef __clang__
#define ___nf_typeof(type) ((typeof(type) *)0)
#define ___nf_field_ref1(field) (field)
#define ___nf_field_ref2(type, field) (___nf_typeof(type)->field)
#else
#define ___nf_typeof_(type, n)                                      \
	({                                                          \
		extern typeof(type) *___nf_cat(___nf_type_tmp_, n); \
		___nf_cat(___nf_type_tmp_, n);                      \
	})
#define ___nf_typeof(type) ___nf_typeof_(type, __COUNTER__)
#define ___nf_field_ref1(field) (&(field))
#define ___nf_field_ref2(type, field) (&(___nf_typeof(type)->field))
#endif
#define ___nf_field_ref(...) ___nf_cat(___nf_field_ref, ___nf_narg(__VA_ARGS__))(__VA_ARGS__)

/* bpf_core_field_exists(p->f) or bpf_core_field_exists(struct s, f): 1 when the
 * running kernel's type has the field, else 0 (and the branch using it is dead
 * code the verifier skips). */
#define bpf_core_field_exists(field...) \
	__builtin_preserve_field_info(___nf_field_ref(field), BPF_FIELD_EXISTS)
#define bpf_core_field_size(field...) \
	__builtin_preserve_field_info(___nf_field_ref(field), BPF_FIELD_BYTE_SIZE)
#define bpf_core_field_offset(field...) \
	__builtin_preserve_field_info(___nf_field_ref(field), BPF_FIELD_BYTE_OFFSET)

/* type: a type name or an expression (typeof is applied to it) */
#define bpf_core_type_id_local(type) __builtin_btf_type_id(*___nf_typeof(type), BPF_TYPE_ID_LOCAL)
#define bpf_core_type_id_kernel(type) __builtin_btf_type_id(*___nf_typeof(type), BPF_TYPE_ID_TARGET)
#define bpf_core_type_exists(type) \
	__builtin_preserve_type_info(*___nf_typeof(type), BPF_TYPE_EXISTS)
#define bpf_core_type_matches(type) \
	__builtin_preserve_type_info(*___nf_typeof(type), BPF_TYPE_MATCHES)
#define bpf_core_type_size(type) __builtin_preserve_type_info(*___nf_typeof(type), BPF_TYPE_SIZE)

/* bpf_core_enum_value(enum e, E_FOO): E_FOO's value in the running kernel */
#ifdef __clang__
#define bpf_core_enum_value_exists(enum_type, enum_value) \
	__builtin_preserve_enum_value(*(typeof(enum_type) *)enum_value, BPF_ENUMVAL_EXISTS)
#define bpf_core_enum_value(enum_type, enum_value) \
	__builtin_preserve_enum_value(*(typeof(enum_type) *)enum_value, BPF_ENUMVAL_VALUE)
#else
#define bpf_core_enum_value_exists(enum_type, enum_value) \
	__builtin_preserve_enum_value(___nf_typeof(enum_type), enum_value, BPF_ENUMVAL_EXISTS)
#define bpf_core_enum_value(enum_type, enum_value) \
	__builtin_preserve_enum_value(___nf_typeof(enum_type), enum_value, BPF_ENUMVAL_VALUE)
#endif

/* ---- single reads ------------------------------------------------------------
 * src is the address of a field (&p->a.b); the builtin records how it was
 * reached, so the offset follows the kernel's layout. */
#define bpf_core_read(dst, sz, src) \
	bpf_probe_read_kernel(dst, sz, (const void *)__builtin_preserve_access_index(src))
#define bpf_core_read_str(dst, sz, src) \
	bpf_probe_read_kernel_str(dst, sz, (const void *)__builtin_preserve_access_index(src))
/* user memory, but laid out by a kernel (UAPI) type, e.g. a syscall argument */
#define bpf_core_read_user(dst, sz, src) \
	bpf_probe_read_user(dst, sz, (const void *)__builtin_preserve_access_index(src))
#define bpf_core_read_user_str(dst, sz, src) \
	bpf_probe_read_user_str(dst, sz, (const void *)__builtin_preserve_access_index(src))

/* ---- pointer chains ----------------------------------------------------------
 * ___nf_chainN(fn, fn_ptr, dst, s, a1, ..., aN) reads s->a1->...->aN into *dst:
 * every intermediate pointer is read with fn_ptr into a local __t (the program
 * may not dereference kernel memory directly), cast back to the type it has at
 * that step, and the last field is read with fn (which may be a string read).
 * Accessors may be member paths (a.b[2].c).
 */
#define ___nf_read(fn, dst, type_expr, ptr, acc) \
	fn((void *)(dst), sizeof(*(dst)), &((typeof(type_expr))(ptr))->acc)

#define ___nf_chain1(fn, fp, dst, s, a) ___nf_read(fn, dst, s, s, a);
#define ___nf_chain2(fn, fp, dst, s, a, b) \
	const void *__t;                   \
	___nf_read(fp, &__t, s, s, a);     \
	___nf_read(fn, dst, s->a, __t, b);
#define ___nf_chain3(fn, fp, dst, s, a, b, c) \
	___nf_chain2(fp, fp, &__t, s, a, b) ___nf_read(fn, dst, s->a->b, __t, c);
#define ___nf_chain4(fn, fp, dst, s, a, b, c, d) \
	___nf_chain3(fp, fp, &__t, s, a, b, c) ___nf_read(fn, dst, s->a->b->c, __t, d);
#define ___nf_chain5(fn, fp, dst, s, a, b, c, d, e) \
	___nf_chain4(fp, fp, &__t, s, a, b, c, d) ___nf_read(fn, dst, s->a->b->c->d, __t, e);
#define ___nf_chain6(fn, fp, dst, s, a, b, c, d, e, f) \
	___nf_chain5(fp, fp, &__t, s, a, b, c, d, e) ___nf_read(fn, dst, s->a->b->c->d->e, __t, f);
#define ___nf_chain7(fn, fp, dst, s, a, b, c, d, e, f, g) \
	___nf_chain6(fp, fp, &__t, s, a, b, c, d, e, f)   \
	        ___nf_read(fn, dst, s->a->b->c->d->e->f, __t, g);
#define ___nf_chain8(fn, fp, dst, s, a, b, c, d, e, f, g, h) \
	___nf_chain7(fp, fp, &__t, s, a, b, c, d, e, f, g)   \
	        ___nf_read(fn, dst, s->a->b->c->d->e->f->g, __t, h);
#define ___nf_chain9(fn, fp, dst, s, a, b, c, d, e, f, g, h, i) \
	___nf_chain8(fp, fp, &__t, s, a, b, c, d, e, f, g, h)   \
	        ___nf_read(fn, dst, s->a->b->c->d->e->f->g->h, __t, i);
/* up to 9 accessors, as with libbpf */
#define ___nf_chain(fn, fp, dst, src, ...) \
	___nf_cat(___nf_chain, ___nf_narg(__VA_ARGS__))(fn, fp, dst, src, __VA_ARGS__)

#define BPF_CORE_READ_INTO(dst, src, a, ...) \
	({ ___nf_chain(bpf_core_read, bpf_core_read, dst, (src), a, ##__VA_ARGS__) })
#define BPF_CORE_READ_STR_INTO(dst, src, a, ...) \
	({ ___nf_chain(bpf_core_read_str, bpf_core_read, dst, (src), a, ##__VA_ARGS__) })
#define BPF_CORE_READ_USER_INTO(dst, src, a, ...) \
	({ ___nf_chain(bpf_core_read_user, bpf_core_read_user, dst, (src), a, ##__VA_ARGS__) })
#define BPF_CORE_READ_USER_STR_INTO(dst, src, a, ...) \
	({ ___nf_chain(bpf_core_read_user_str, bpf_core_read_user, dst, (src), a, ##__VA_ARGS__) })
/* The BPF_PROBE_READ forms emit no relocation: any types, fixed offsets. */
#define BPF_PROBE_READ_INTO(dst, src, a, ...)                                    \
	({ ___nf_chain(bpf_probe_read_kernel, bpf_probe_read_kernel, dst, (src), \
	               a, ##__VA_ARGS__) })
#define BPF_PROBE_READ_STR_INTO(dst, src, a, ...)                                    \
	({ ___nf_chain(bpf_probe_read_kernel_str, bpf_probe_read_kernel, dst, (src), \
	               a, ##__VA_ARGS__) })
#define BPF_PROBE_READ_USER_INTO(dst, src, a, ...) \
	({ ___nf_chain(bpf_probe_read_user, bpf_probe_read_user, dst, (src), a, ##__VA_ARGS__) })
#define BPF_PROBE_READ_USER_STR_INTO(dst, src, a, ...)                           \
	({ ___nf_chain(bpf_probe_read_user_str, bpf_probe_read_user, dst, (src), \
	               a, ##__VA_ARGS__) })

/* BPF_CORE_READ(t, mm, exe_file) is the value of t->mm->exe_file; a failed
 * read leaves it zero-filled (bpf_probe_read_kernel clears the destination). */
#define BPF_CORE_READ(src, a, ...)                                 \
	({                                                         \
		___nf_type((src), a, ##__VA_ARGS__) __r;           \
		BPF_CORE_READ_INTO(&__r, (src), a, ##__VA_ARGS__); \
		__r;                                               \
	})
#define BPF_CORE_READ_USER(src, a, ...)                                 \
	({                                                              \
		___nf_type((src), a, ##__VA_ARGS__) __r;                \
		BPF_CORE_READ_USER_INTO(&__r, (src), a, ##__VA_ARGS__); \
		__r;                                                    \
	})
#define BPF_PROBE_READ(src, a, ...)                                 \
	({                                                          \
		___nf_type((src), a, ##__VA_ARGS__) __r;            \
		BPF_PROBE_READ_INTO(&__r, (src), a, ##__VA_ARGS__); \
		__r;                                                \
	})
#define BPF_PROBE_READ_USER(src, a, ...)                                 \
	({                                                               \
		___nf_type((src), a, ##__VA_ARGS__) __r;                 \
		BPF_PROBE_READ_USER_INTO(&__r, (src), a, ##__VA_ARGS__); \
		__r;                                                     \
	})

/* ---- bitfields -----------------------------------------------------------------
 * A bitfield has no address, so it is read as the integer that holds it
 * (BYTE_SIZE bytes at BYTE_OFFSET, both relocated), shifted left to drop the
 * bits above it and right, arithmetically when it is signed, to drop those
 * below: the two shifts the compiler records for a u64 holding the storage
 * in its low-order bytes.
 */
#define ___nf_field_info(s, field, kind) __builtin_preserve_field_info((s)->field, BPF_FIELD_##kind)

#define ___nf_bitfield_extract(val, s, field)                                                 \
	({                                                                                    \
		(val) <<= ___nf_field_info(s, field, LSHIFT_U64);                             \
		if (___nf_field_info(s, field, SIGNED))                                       \
			(val) = (unsigned long long)((long long)(val) >>                      \
			                             ___nf_field_info(s, field, RSHIFT_U64)); \
		else                                                                          \
			(val) >>= ___nf_field_info(s, field, RSHIFT_U64);                     \
		(val);                                                                        \
	})

/* With bpf_probe_read_kernel, for programs that cannot load kernel memory
 * directly (kprobes).  On big-endian the storage goes into the u64's last
 * bytes, where its low-order bytes are. */
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define ___nf_bitfield_dst(p, s, field) ((void *)(p))
#else
#define ___nf_bitfield_dst(p, s, field) ((void *)(p) + (8 - ___nf_field_info(s, field, BYTE_SIZE)))
#endif
#define BPF_CORE_READ_BITFIELD_PROBED(s, field)                                         \
	({                                                                              \
		unsigned long long ___nf_v = 0;                                         \
		bpf_probe_read_kernel(___nf_bitfield_dst(&___nf_v, s, field),           \
		                      ___nf_field_info(s, field, BYTE_SIZE),            \
		                      (const void *)(s) +                               \
		                              ___nf_field_info(s, field, BYTE_OFFSET)); \
		___nf_bitfield_extract(___nf_v, s, field);                              \
	})

/* With a direct load (BTF-typed pointers: tp_btf, fentry, iterators). */
#define BPF_CORE_READ_BITFIELD(s, field)                                                           \
	({                                                                                         \
		const void *___nf_p = (const void *)(s) + ___nf_field_info(s, field, BYTE_OFFSET); \
		unsigned long long ___nf_v;                                                        \
		/* the offset relocation is applied once, to ___nf_p, not re-done in	\
	 * every case below */             \
		asm volatile("" : "+r"(___nf_p));                                                  \
		switch (___nf_field_info(s, field, BYTE_SIZE)) {                                   \
		case 1:                                                                            \
			___nf_v = *(const unsigned char *)___nf_p;                                 \
			break;                                                                     \
		case 2:                                                                            \
			___nf_v = *(const unsigned short *)___nf_p;                                \
			break;                                                                     \
		case 4:                                                                            \
			___nf_v = *(const unsigned int *)___nf_p;                                  \
			break;                                                                     \
		case 8:                                                                            \
			___nf_v = *(const unsigned long long *)___nf_p;                            \
			break;                                                                     \
		default:                                                                           \
			___nf_v = 0;                                                               \
			break;                                                                     \
		}                                                                                  \
		___nf_bitfield_extract(___nf_v, s, field);                                         \
	})

/* Read the storage, replace the field's bits with new_val's, write it back. */
#define BPF_CORE_WRITE_BITFIELD(s, field, new_val)                                        \
	({                                                                                \
		void *___nf_p = (void *)(s) + ___nf_field_info(s, field, BYTE_OFFSET);    \
		unsigned int ___nf_size = ___nf_field_info(s, field, BYTE_SIZE);          \
		unsigned int ___nf_lsh = ___nf_field_info(s, field, LSHIFT_U64);          \
		unsigned int ___nf_rsh = ___nf_field_info(s, field, RSHIFT_U64);          \
		unsigned long long ___nf_mask, ___nf_v = 0,                               \
		                               ___nf_new = (unsigned long long)(new_val); \
		asm volatile("" : "+r"(___nf_p));                                         \
		switch (___nf_size) {                                                     \
		case 1:                                                                   \
			___nf_v = *(unsigned char *)___nf_p;                              \
			break;                                                            \
		case 2:                                                                   \
			___nf_v = *(unsigned short *)___nf_p;                             \
			break;                                                            \
		case 4:                                                                   \
			___nf_v = *(unsigned int *)___nf_p;                               \
			break;                                                            \
		case 8:                                                                   \
			___nf_v = *(unsigned long long *)___nf_p;                         \
			break;                                                            \
		}                                                                         \
		/* the field's bits in the storage: rsh-lsh above bit 0, 64-rsh wide */   \
		___nf_mask = (~0ULL << ___nf_rsh) >> ___nf_lsh;                           \
		___nf_v = (___nf_v & ~___nf_mask) |                                       \
		          ((___nf_new << (___nf_rsh - ___nf_lsh)) & ___nf_mask);          \
		switch (___nf_size) {                                                     \
		case 1:                                                                   \
			*(unsigned char *)___nf_p = ___nf_v;                              \
			break;                                                            \
		case 2:                                                                   \
			*(unsigned short *)___nf_p = ___nf_v;                             \
			break;                                                            \
		case 4:                                                                   \
			*(unsigned int *)___nf_p = ___nf_v;                               \
			break;                                                            \
		case 8:                                                                   \
			*(unsigned long long *)___nf_p = ___nf_v;                         \
			break;                                                            \
		}                                                                         \
	})

/* ---- typed casts ---------------------------------------------------------------
 * bpf_core_cast(ptr, struct sk_buff) gives a pointer the verifier knows as that
 * kernel type (read-only), through the bpf_rdonly_cast kfunc (kernel 6.2+).
 */
extern void *bpf_rdonly_cast(const void *obj, __u32 btf_id) __ksym __weak;
#define bpf_core_cast(ptr, type) \
	((typeof(type) *)bpf_rdonly_cast((ptr), bpf_core_type_id_kernel(type)))

#endif /* __BPF_CORE_READ__ */

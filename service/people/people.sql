-- Employees and the unmatched report.

-- name: admin_employees_count
-- Employees, optionally the one with a normalised email.
SELECT count(*) AS total FROM employees
 WHERE (%(email)s::text IS NULL OR email_normalized = %(email)s);

-- name: admin_employees_page
-- One page of employees.
SELECT id, email, first_name, last_name, created_at, updated_at FROM employees
 WHERE (%(email)s::text IS NULL OR email_normalized = %(email)s)
 ORDER BY id
 LIMIT %(limit)s OFFSET %(offset)s;

-- name: admin_employees_by_emails
-- Employees holding any of the given normalised emails.
SELECT id, email, email_normalized FROM employees
 WHERE email_normalized = ANY(%(emails)s::text[])
 ORDER BY id;

-- name: admin_employees_insert
-- Import employees in one statement; arrays are parallel.
INSERT INTO employees (email, email_normalized, first_name, last_name)
SELECT * FROM unnest(%(emails)s::text[], %(normalized)s::text[], %(first_names)s::text[],
                     %(last_names)s::text[])
RETURNING id, email, email_normalized, first_name, last_name, created_at, updated_at;

-- name: admin_employee_lock
-- One employee, locked until the transaction ends.
SELECT id, email, email_normalized, first_name, last_name, created_at, updated_at
  FROM employees WHERE id = %(id)s FOR UPDATE;

-- name: admin_employee_update
-- Change an employee's email or name.
UPDATE employees
   SET email = %(email)s, email_normalized = %(email_normalized)s,
       first_name = %(first_name)s, last_name = %(last_name)s, updated_at = now()
 WHERE id = %(id)s
RETURNING id, email, email_normalized, first_name, last_name, created_at, updated_at;

-- name: admin_unmatched_count
-- How many emails have kept results that matched nobody.
SELECT count(DISTINCT email_normalized) AS total FROM results
 WHERE status = 'unmatched' AND (%(email)s::text IS NULL OR email_normalized = %(email)s);

-- name: admin_unmatched_page
-- Kept results that matched nobody, grouped by normalised email.
SELECT email_normalized AS email, count(*) AS results,
       array_agg(DISTINCT course_id ORDER BY course_id) AS course_ids,
       max(completed_at) AS last_completed_at
  FROM results
 WHERE status = 'unmatched' AND (%(email)s::text IS NULL OR email_normalized = %(email)s)
 GROUP BY email_normalized
 ORDER BY email_normalized
 LIMIT %(limit)s OFFSET %(offset)s;

-- name: employee_sort_key
-- How names sort, the Swedish way (docs/console.md, "Languages"): å, ä, ö after z, accents
-- as their base letter. In the C collation, which every PostgreSQL has (the embedded one is
-- built without ICU): å ä ö (and æ ø) become the characters after z ({ | }), é è á à ü as e e a a y,
-- before lower(), which the C locale applies to A-Z only.
lower(translate(coalesce(last_name, '') || ' ' || coalesce(first_name, '') || ' ' || email,
                'åäöæøéèêáàâüëïíóúÅÄÖÆØÉÈÊÁÀÂÜËÏÍÓÚ',
                '{|}|}eeeaaayeiiou{|}|}EEEAAAYEIIOU')) COLLATE "C"

-- name: admin_employees_search_count
-- Employees whose name or email contains the text (case-insensitive).
SELECT count(*) AS total FROM employees
 WHERE %(pattern)s::text IS NULL
    OR email_normalized ILIKE %(pattern)s
    OR (coalesce(first_name, '') || ' ' || coalesce(last_name, '')) ILIKE %(pattern)s
    OR (coalesce(last_name, '') || ' ' || coalesce(first_name, '')) ILIKE %(pattern)s;

-- name: admin_employees_search_page
-- One page of them, by last name, first name and email, the Swedish way.
SELECT id, email, first_name, last_name, created_at, updated_at FROM employees
 WHERE %(pattern)s::text IS NULL
    OR email_normalized ILIKE %(pattern)s
    OR (coalesce(first_name, '') || ' ' || coalesce(last_name, '')) ILIKE %(pattern)s
    OR (coalesce(last_name, '') || ' ' || coalesce(first_name, '')) ILIKE %(pattern)s
 ORDER BY
-- include: employee_sort_key
 , id
 LIMIT %(limit)s OFFSET %(offset)s;

-- name: admin_employee_get
-- One employee.
SELECT id, email, first_name, last_name, created_at, updated_at FROM employees WHERE id = %(id)s;
